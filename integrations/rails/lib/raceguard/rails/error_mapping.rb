# frozen_string_literal: true

module Raceguard
  module Rails
    # A guard's violation during save, save! or destroy arrives as
    # ActiveRecord's own error: a stale write (40001 from a lock_version
    # guard, or its 23514 with sqlstate=23514) as ActiveRecord::StaleObjectError;
    # a write-once or ledger violation (23514) as a validation error on the
    # column (save returns false, save! raises ActiveRecord::RecordInvalid,
    # destroy returns false). The guard is found by the error's table and
    # constraint name (for a stale write, which has no constraint: its table
    # and column). Any other error passes through unchanged.
    module ErrorMapping
      Violation = Struct.new(:guard, :column, :type, keyword_init: true)

      def save(**options, &block)
        raceguard_errors(bang: false) { super }
      end

      def save!(**options, &block)
        raceguard_errors(bang: true) { super }
      end

      # update and update! save inside a transaction of their own: wrapped
      # too, so that a guard added since the guards were read can be looked
      # up once that transaction has ended.
      def update(attributes)
        raceguard_errors(bang: false) { super }
      end

      def update!(attributes)
        raceguard_errors(bang: true) { super }
      end

      def destroy
        raceguard_errors(bang: false, action: "destroy") { super }
      end

      private

      def raceguard_errors(bang:, action: nil)
        connection = self.class.connection
        # Read the guards before a failure can abort the transaction.
        connection.raceguard_guards if connection.respond_to?(:raceguard_guards)
        action ||= new_record? ? "create" : "update"
        yield
      rescue ActiveRecord::StatementInvalid => e
        violation = ErrorMapping.violation(connection, e, action) or raise
        raise ActiveRecord::StaleObjectError.new(self, action) if violation.type == :stale

        attribute = violation.column && has_attribute?(violation.column) ? violation.column.to_sym : :base
        errors.add(attribute, violation.type)
        raise ActiveRecord::RecordInvalid, self if bang

        false
      end

      class << self
        # The guard violation error is, or nil when it is not a guard's.
        def violation(connection, error, action)
          result = error.cause.is_a?(PG::Error) && error.cause.result
          return unless result && connection.respond_to?(:raceguard_guard_for)

          state, schema, table, column, constraint =
            [PG::PG_DIAG_SQLSTATE, PG::PG_DIAG_SCHEMA_NAME, PG::PG_DIAG_TABLE_NAME,
             PG::PG_DIAG_COLUMN_NAME, PG::PG_DIAG_CONSTRAINT_NAME].map { |code| result.error_field(code) }
          return unless table

          case state
          when "40001" then stale_write(connection, schema, table, column)
          when "23514" then check_violation(connection, schema, table, column, constraint, action)
          end
        end

        private

        # PostgreSQL's own 40001 carries no table and column: only a
        # lock_version guard's does.
        def stale_write(connection, schema, table, column)
          return unless column

          guard = connection.raceguard_guard_for(schema, table) do |entry|
            entry.guard == "lock_version" && entry.columns.first == column
          end
          guard && Violation.new(guard: guard, column: column, type: :stale)
        end

        def check_violation(connection, schema, table, column, constraint, action)
          return unless constraint

          guard = connection.raceguard_guard_for(schema, table) { |entry| entry.name == constraint }
          return unless guard

          case guard.guard
          when "lock_version"
            Violation.new(guard: guard, column: column, type: :stale)
          when "immutable_once_set"
            Violation.new(guard: guard, column: column || guard.columns.first, type: :write_once)
          when "running_balance"
            # An insert is refused only by min_balance: the error is the amount's.
            if action == "create"
              Violation.new(guard: guard, column: guard.columns.first, type: :below_min_balance)
            else
              Violation.new(guard: guard, column: column, type: :ledger_history)
            end
          end
        end
      end
    end
  end
end
