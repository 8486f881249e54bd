# frozen_string_literal: true

module Raceguard
  module Rails
    # A guard's violation during save, save! or destroy arrives as
    # ActiveRecord's own error: a stale write (40001 from a lock_version
    # guard, or its 23514 with sqlstate=23514) as ActiveRecord::StaleObjectError;
    # a write-once or ledger violation (23514) as a validation error on the
    # column (save returns false, save! raises ActiveRecord::RecordInvalid,
    # destroy returns false); a transition guard's 23514 (an undeclared start
    # state or edge, or a duplicate transition) as a validation error on the
    # status column whose details carry the states from the error's DETAIL.
    # The guard is found by the error's table and
    # constraint name (for a stale write, which has no constraint: its table
    # and column). Any other error passes through unchanged.
    module ErrorMapping
      Violation = Struct.new(:guard, :column, :type, :states, keyword_init: true)

      # The transition guard's DETAIL shows each state as a SQL literal
      # ('it''s') or NULL, so a state holding any text reads back exactly.
      LITERAL = "('(?:[^']|'')*'|NULL)"
      TRANSITION_DETAILS = {
        transition: /\AThe update changes it from #{LITERAL} to #{LITERAL}, which trigger /,
        duplicate_transition: /\AAnother transaction changed it from #{LITERAL} to #{LITERAL} after this statement began/,
        start_state: /\AThe new row's state is #{LITERAL}; trigger /
      }.freeze
      # Without DETAIL (a role that may not read the column), the message says which.
      TRANSITION_MESSAGES = { transition: "undeclared transition ", duplicate_transition: "duplicate transition ",
                              start_state: "undeclared start state " }.freeze

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
        if violation.states
          ErrorMapping.add_transition_error(errors, attribute, violation)
        else
          errors.add(attribute, violation.type)
        end
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
          when "23514"
            found = check_violation(connection, schema, table, column, constraint, action)
            found && found.guard.guard == "transition" ? transition_violation(found, result) : found
          end
        end

        # errors.add with the states as details (from:, to:; nil is NULL) and
        # the message naming them as the guard's DETAIL does.
        def add_transition_error(errors, attribute, violation)
          states = violation.states
          shown = states.transform_values { |literal| literal || "?" }
          message = I18n.t("errors.messages.#{violation.type}", **shown)
          # A state the error does not show is left out of the details (nil
          # there is the NULL state).
          details = states.compact.transform_values { |literal| unliteral(literal) }
          errors.add(attribute, violation.type, message: message, **details)
        end

        # The state a literal of the DETAIL shows: nil for NULL.
        def unliteral(literal)
          literal == "NULL" ? nil : literal[1...-1].gsub("''", "'")
        end

        private

        # The kind of refusal and its states (as literals: nil where DETAIL is absent).
        def transition_violation(violation, result)
          detail = result.error_field(PG::PG_DIAG_MESSAGE_DETAIL).to_s
          message = result.error_field(PG::PG_DIAG_MESSAGE_PRIMARY).to_s
          TRANSITION_DETAILS.each do |type, pattern|
            next unless (m = pattern.match(detail)) || message.start_with?(TRANSITION_MESSAGES[type])

            states = type == :start_state ? { to: m && m[1] } : { from: m && m[1], to: m && m[2] }
            return Violation.new(guard: violation.guard, column: violation.column, type: type, states: states)
          end
          Violation.new(guard: violation.guard, column: violation.column, type: :transition,
                        states: { from: nil, to: nil })
        end

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
          when "transition"
            Violation.new(guard: guard, column: column || guard.columns.first, type: :transition)
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
