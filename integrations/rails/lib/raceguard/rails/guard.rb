# frozen_string_literal: true

require "bigdecimal"

module Raceguard
  module Rails
    # What a guard's trigger looks like: its name, function, events and
    # arguments, built from a migration helper's arguments. The migration
    # helpers create exactly this, and the schema dumper writes a guard back
    # as a helper call only when this rebuilds its trigger exactly.
    module Guard
      # PostgreSQL's identifier limit (NAMEDATALEN - 1): a longer name would be
      # truncated, and the 23514 constraint name would differ from the one given.
      NAME_LIMIT = 63
      NUMBER = /\A[+-]?(\d+(\.\d*)?|\.\d+)\z/.freeze

      Definition = Struct.new(:kind, :table, :name, :function, :events, :arguments, keyword_init: true)

      KINDS = {
        lock_version: { function: "lock_version", events: %w[INSERT UPDATE], suffix: "guard" },
        write_once: { function: "immutable_once_set", events: %w[UPDATE], suffix: "write_once" },
        running_balance: { function: "running_balance", events: %w[INSERT UPDATE DELETE], suffix: "running_balance" },
        transition: { function: "transition", events: %w[INSERT UPDATE], suffix: "transition" }
      }.freeze

      # Characters at either end of an unquoted state that the guard refuses
      # (its blanks), and those that need quotes anywhere in it.
      BLANK = " \t\n\r\f\v"
      NEEDS_QUOTES = /[>="]|\A[#{BLANK}]|[#{BLANK}]\z|\A\z/.freeze

      # The guard kind (as the helpers name it) of a raceguard.guards.guard value.
      KIND_OF_FUNCTION = KINDS.to_h { |kind, shape| [shape[:function], kind] }.freeze

      class << self
        # add_lock_version_guard :orders, column: :lock_version, strict: false, sqlstate: nil, name: nil
        def lock_version(table, column: :lock_version, strict: false, sqlstate: nil, name: nil)
          column = column_name(column)
          arguments = [column]
          arguments << "strict=true" if boolean(strict, :strict)
          unless sqlstate.nil?
            code = sqlstate.to_s
            unless %w[40001 23514].include?(code)
              raise ArgumentError, "sqlstate: must be \"40001\" or \"23514\", not #{sqlstate.inspect}"
            end
            arguments << "sqlstate=#{code}" unless code == "40001"
          end
          build(:lock_version, table, name, [column], arguments)
        end

        # add_write_once_guard :conversations, :texter_id, ..., allow_unset: false, name: nil
        def write_once(table, *columns, allow_unset: false, name: nil)
          raise ArgumentError, "add_write_once_guard needs at least one column" if columns.empty?

          columns = columns.flatten.map { |column| column_name(column) }
          arguments = columns.dup
          arguments << "allow_unset=true" if boolean(allow_unset, :allow_unset)
          build(:write_once, table, name, columns, arguments)
        end

        # add_running_balance_guard :entries, amount: :amount, balance: :balance, group: [:account_id],
        #                           seq: :entry_no, min_balance: nil, initial: nil, name: nil
        def running_balance(table, amount:, balance:, seq:, group: [], min_balance: nil, initial: nil, name: nil)
          amount = column_name(amount)
          balance = column_name(balance)
          groups = Array(group).map { |column| column_name(column) }
          arguments = [amount, balance, *groups, "seq=#{column_name(seq)}"]
          arguments << "min_balance=#{number(min_balance, :min_balance)}" unless min_balance.nil?
          arguments << "initial=#{number(initial, :initial)}" unless initial.nil?
          build(:running_balance, table, name, [balance], arguments)
        end

        # add_transition_guard :tickets, :status, start: ["open"],
        #                      edges: { "open" => ["assigned"], "assigned" => ["closed", "open"] }, name: nil
        # A state is a String (or Symbol, Integer, true/false), written in the
        # column's text form; nil is the NULL state. start: lists the states a
        # row may start in; edges: maps each state to the states it may change
        # to (one state or an Array).
        def transition(table, column, start: [], edges: {}, name: nil)
          column = column.to_s
          raise ArgumentError, "add_transition_guard needs the column" if column.empty?
          raise ArgumentError, "edges: must be a Hash of from => to states, not #{edges.inspect}" unless edges.is_a?(Hash)

          arguments = [column]
          starts = start.is_a?(Array) ? start : [start]
          starts.each { |state| arguments << ">#{transition_state(state)}" }
          edges.each do |from, to|
            targets = to.is_a?(Array) ? to : [to]
            raise ArgumentError, "edges: #{from.inspect} => [] lists no state to change to" if targets.empty?

            targets.each { |state| arguments << "#{transition_state(from)}>#{transition_state(state)}" }
          end
          raise ArgumentError, "add_transition_guard needs at least one start state or edge" if arguments.size == 1

          build(:transition, table, name, [column], arguments)
        end

        # A state as the guard parses it: nil is an unquoted NULL; a state
        # holding >, = or ", blank at either end, empty, or spelling NULL (in
        # any case) is double-quoted, with "" for ".
        def transition_state(state)
          return "NULL" if state.nil?

          text =
            case state
            when String then state
            when Symbol, Integer, true, false then state.to_s
            else raise ArgumentError, "a state must be a String, Symbol, Integer, true, false or nil, not #{state.inspect}"
            end
          raise ArgumentError, "state #{text.inspect} contains a NUL character" if text.include?("\0")
          raise ArgumentError, "state #{text.inspect} is not valid #{text.encoding}" unless text.valid_encoding?

          quote = NEEDS_QUOTES.match?(text) || text.downcase(:ascii) == "null"
          quote ? %("#{text.gsub('"', '""')}") : text
        end

        # The inverse: [:start, state] or [from, to] for an edge argument as
        # the guard reads it; ArgumentError where the guard would refuse it.
        def parse_transition_edge(argument)
          separators = []
          quoted = false
          argument.each_char.with_index do |char, i|
            if char == '"'
              quoted = !quoted
            elsif char == ">" && !quoted
              separators << i
            end
          end
          raise ArgumentError, "not one edge: #{argument.inspect}" unless separators.size == 1 && !quoted

          from = argument[0...separators[0]]
          to = parse_transition_state(argument[(separators[0] + 1)..])
          from.empty? ? [:start, to] : [parse_transition_state(from), to]
        end

        def parse_transition_state(text)
          if text.start_with?('"')
            inner = text[1...-1]
            raise ArgumentError, "malformed state #{text.inspect}" unless text.end_with?('"') && text.size >= 2 &&
                                                                        !inner.gsub('""', "").include?('"')

            return inner.gsub('""', '"')
          end
          raise ArgumentError, "malformed state #{text.inspect}" if text.empty? || text.include?('"')

          text.downcase(:ascii) == "null" ? nil : text
        end

        # A trigger's arguments from pg_trigger's tgnargs and tgargs (as hex).
        def trigger_arguments(nargs, hex_args)
          [hex_args].pack("H*").force_encoding(Encoding::UTF_8).split("\0", -1).first(nargs.to_i)
        end

        # The default trigger name: <table>_<columns>_<suffix>, with no hash,
        # so the constraint name in a 23514 error is known in advance.
        def default_name(kind, table, columns)
          [table.to_s.split(".").last, *columns, KINDS.fetch(kind)[:suffix]].join("_")
        end

        private

        def build(kind, table, name, name_columns, arguments)
          raise ArgumentError, "a guard needs a table name" if table.to_s.empty?

          name = (name || default_name(kind, table, name_columns)).to_s
          raise ArgumentError, "a guard needs a trigger name" if name.empty?
          if name.bytesize > NAME_LIMIT
            raise ArgumentError, "trigger name #{name.inspect} is longer than PostgreSQL's #{NAME_LIMIT} bytes: " \
                                 "pass a shorter name:"
          end

          shape = KINDS.fetch(kind)
          Definition.new(kind: kind, table: table.to_s, name: name, function: shape[:function],
                         events: shape[:events], arguments: arguments)
        end

        def column_name(column)
          name = column.to_s
          raise ArgumentError, "a column name cannot be empty" if name.empty?
          raise ArgumentError, "column name #{name.inspect} contains \"=\": raceguard would read it as an option" if name.include?("=")

          name
        end

        def boolean(value, option)
          return value if value == true || value == false

          raise ArgumentError, "#{option}: must be true or false, not #{value.inspect}"
        end

        def number(value, option)
          text =
            case value
            when Integer then value.to_s
            when BigDecimal then value.to_s("F")
            when String then value.strip
            else raise ArgumentError, "#{option}: must be an Integer, a BigDecimal or a numeric String, not #{value.inspect}"
            end
          raise ArgumentError, "#{option}: #{value.inspect} is not a number" unless NUMBER.match?(text)

          text
        end
      end
    end
  end
end
