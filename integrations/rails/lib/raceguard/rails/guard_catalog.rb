# frozen_string_literal: true

module Raceguard
  module Rails
    # The database's guards as raceguard.guards lists them, read once per
    # connection and kept, so that an error can be traced to its guard
    # without a query (after a failed statement the transaction may be
    # aborted and could not run one).
    module GuardCatalog
      Entry = Struct.new(:schema, :table, :name, :guard, :columns, :options, keyword_init: true)

      # Whether raceguard.guards exists and this role may read it; a CASE, so
      # that no privilege check runs on a schema that does not exist.
      READABLE = <<~SQL.squish
        SELECT CASE WHEN n.oid IS NULL OR NOT pg_catalog.has_schema_privilege(n.oid, 'USAGE') THEN false
                    WHEN pg_catalog.to_regclass('raceguard.guards') IS NULL THEN false
                    ELSE pg_catalog.has_table_privilege('raceguard.guards', 'SELECT') END
          FROM (SELECT (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'raceguard') AS oid) n
      SQL

      GUARDS = <<~SQL.squish
        SELECT n.nspname, c.relname, g.trigger_name, g.guard,
               pg_catalog.array_to_json(g.columns)::text, g.options::text
          FROM raceguard.guards g
          JOIN pg_catalog.pg_class c ON c.oid = g.table_name
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      SQL

      def raceguard_guards
        @raceguard_guards ||= load_raceguard_guards
      end

      # Forgets the guards read, after this connection added or removed one.
      def raceguard_guards_changed!
        @raceguard_guards = nil
      end

      # The guard on schema.table that matches the block. A guard another
      # connection added since the guards were read is found by reading them
      # again, when no transaction is open (else nil: the error passes through).
      def raceguard_guard_for(schema, table, &matches)
        find = lambda do
          raceguard_guards.find { |entry| entry.table == table && (schema.nil? || entry.schema == schema) && matches.call(entry) }
        end
        found = find.call
        if found.nil? && !transaction_open?
          raceguard_guards_changed!
          found = find.call
        end
        found
      end

      private

      def load_raceguard_guards
        return [] unless select_value(READABLE, "raceguard guards")

        select_rows(GUARDS, "raceguard guards").map do |schema, table, name, guard, columns, options|
          Entry.new(schema: schema, table: table, name: name, guard: guard,
                    columns: JSON.parse(columns), options: JSON.parse(options)).freeze
        end.freeze
      end
    end
  end
end
