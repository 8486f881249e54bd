# frozen_string_literal: true

require "stringio"

module Raceguard
  module Rails
    # Writes every raceguard guard into schema.rb, after the tables (and
    # their foreign keys), as the migration helper call that recreates it
    # exactly. A guard the helpers cannot rebuild exactly (written by hand
    # with other arguments, an AFTER or constraint trigger, a WHEN clause, an
    # unknown guard) is written as `execute` of its CREATE TRIGGER, so no
    # guard is ever lost. A disabled guard is written disabled. Partition
    # clones are not written: the parent's trigger creates them.
    module SchemaDumper
      GUARDS = <<~SQL.squish
        SELECT c.relname, g.trigger_name, g.guard, g.timing, pg_catalog.array_to_json(g.events)::text,
               t.tgnargs, pg_catalog.encode(t.tgargs, 'hex'), t.tgenabled, pg_catalog.pg_get_triggerdef(t.oid),
               (t.tgqual IS NULL AND t.tgconstraint = 0 AND pg_catalog.cardinality(t.tgattr::int2[]) = 0) AS plain
          FROM raceguard.guards g
          JOIN pg_catalog.pg_trigger t ON t.tgrelid = g.table_name AND t.tgname = g.trigger_name
          JOIN pg_catalog.pg_class c ON c.oid = g.table_name
         WHERE g.clone_of IS NULL AND c.relnamespace = pg_catalog.to_regnamespace(pg_catalog.current_schema())
         ORDER BY c.relname, g.trigger_name
      SQL

      ENABLE = { "D" => "DISABLE", "R" => "ENABLE REPLICA", "A" => "ENABLE ALWAYS" }.freeze

      private

      # ActiveRecord 7.1+ writes `create_schema` for every schema but public,
      # the extension's own schema included, before `enable_extension`: that
      # fails in a database made from a template holding raceguard ("schema
      # "raceguard" already exists"), and CREATE EXTENSION makes the schema
      # itself. So the extension's schema is left out.
      def schemas(stream)
        written = StringIO.new
        super(written)
        lines = written.string.lines.reject { |line| line.strip == 'create_schema "raceguard"' }
        stream.print(lines.join) unless lines.all? { |line| line.strip.empty? }
      end

      def tables(stream)
        super
        raceguard_guards(stream)
      end

      def raceguard_guards(stream)
        return unless @connection.respond_to?(:raceguard_guards) && @connection.select_value(GuardCatalog::READABLE)

        tables = @connection.tables
        lines = @connection.select_rows(GUARDS, "raceguard schema dump").flat_map do |row|
          table = row[0]
          next [] if ignored?(table) || !tables.include?(table)

          raceguard_guard_lines(*row)
        end
        return if lines.empty?

        stream.puts
        stream.puts "  # raceguard guards (raceguard-rails)"
        lines.each { |line| stream.puts "  #{line}" }
      end

      def raceguard_guard_lines(table, name, guard, timing, events, nargs, hex_args, enabled, definition, plain)
        arguments = Guard.trigger_arguments(nargs, hex_args)
        call = raceguard_helper_call(table, name, guard, arguments)
        rebuilt = call && Guard.public_send(call[0], table, *call[1], **call[2])
        exact = rebuilt && [true, "t"].include?(plain) && timing == "BEFORE" &&
                JSON.parse(events).sort == rebuilt.events.sort && rebuilt.function == guard &&
                rebuilt.name == name && rebuilt.arguments == arguments
        lines = [exact ? raceguard_helper_line(table, call) : "execute #{definition.inspect}"]
        if ENABLE.key?(enabled)
          lines << "execute #{"ALTER TABLE #{@connection.quote_table_name(table)} #{ENABLE[enabled]} TRIGGER #{@connection.quote_column_name(name)}".inspect}"
        end
        lines
      end

      # [Guard method, positional columns, keywords] for the helper that would
      # rebuild these trigger arguments, or nil.
      def raceguard_helper_call(_table, name, guard, arguments)
        return raceguard_transition_call(name, arguments) if guard == "transition"

        plain, options = arguments.partition { |argument| !argument.include?("=") }
        options = options.to_h { |option| option.split("=", 2) }
        case guard
        when "lock_version"
          return unless plain.size == 1

          keywords = { column: plain[0] }
          keywords[:strict] = true if options.delete("strict") == "true"
          keywords[:sqlstate] = options.delete("sqlstate") if options.key?("sqlstate")
          options.empty? ? [:lock_version, [], keywords.merge(name: name)] : nil
        when "immutable_once_set"
          keywords = {}
          keywords[:allow_unset] = true if options.delete("allow_unset") == "true"
          options.empty? ? [:write_once, plain, keywords.merge(name: name)] : nil
        when "running_balance"
          return unless plain.size >= 2 && options.key?("seq")

          keywords = { amount: plain[0], balance: plain[1], group: plain[2..], seq: options.delete("seq") }
          %w[min_balance initial].each { |key| keywords[key.to_sym] = options.delete(key) if options.key?(key) }
          options.empty? ? [:running_balance, [], keywords.merge(name: name)] : nil
        end
      rescue ArgumentError
        nil
      end

      # Start states first, then the edges grouped by their from state: a
      # guard whose arguments come in another order is not rebuilt exactly
      # and is kept with `execute`.
      def raceguard_transition_call(name, arguments)
        return if arguments.size < 2

        start = []
        edges = {}
        arguments.drop(1).each do |argument|
          from, to = Guard.parse_transition_edge(argument)
          from == :start ? start << to : (edges[from] ||= []) << to
        end
        keywords = {}
        keywords[:start] = start unless start.empty?
        keywords[:edges] = edges unless edges.empty?
        [:transition, [arguments[0]], keywords.merge(name: name)]
      end

      HELPERS = { lock_version: "add_lock_version_guard", write_once: "add_write_once_guard",
                  running_balance: "add_running_balance_guard", transition: "add_transition_guard" }.freeze

      def raceguard_helper_line(table, call)
        kind, columns, keywords = call
        parts = [table.inspect, *columns.map(&:inspect)]
        keywords.each { |key, value| parts << "#{key}: #{raceguard_literal(value)}" }
        "#{HELPERS.fetch(kind)} #{parts.join(', ')}"
      end

      def raceguard_literal(value)
        case value
        when Array then "[#{value.map { |item| raceguard_literal(item) }.join(', ')}]"
        when Hash then "{ #{value.map { |key, item| "#{key.inspect} => #{raceguard_literal(item)}" }.join(', ')} }"
        when nil then "nil"
        when /\A-?[1-9]\d*\z|\A0\z/ then value # an integer written back exactly
        else value.inspect
        end
      end
    end
  end
end
