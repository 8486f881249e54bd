# frozen_string_literal: true

module Raceguard
  module Rails
    # Migration helpers, on the PostgreSQL connection (so they work in
    # migrations, in schema.rb and on ActiveRecord::Base.connection).
    # Every identifier and literal goes through the connection's quoting.
    module MigrationHelpers
      def add_lock_version_guard(table_name, **options)
        create_raceguard_trigger(Guard.lock_version(table_name, **options))
      end

      def remove_lock_version_guard(table_name, **options)
        drop_raceguard_trigger(Guard.lock_version(table_name, **options))
      end

      def add_write_once_guard(table_name, *columns, **options)
        create_raceguard_trigger(Guard.write_once(table_name, *columns, **options))
      end

      def remove_write_once_guard(table_name, *columns, **options)
        drop_raceguard_trigger(Guard.write_once(table_name, *columns, **options))
      end

      def add_running_balance_guard(table_name, **options)
        create_raceguard_trigger(Guard.running_balance(table_name, **options))
      end

      def remove_running_balance_guard(table_name, **options)
        drop_raceguard_trigger(Guard.running_balance(table_name, **options))
      end

      def add_transition_guard(table_name, column, **options)
        create_raceguard_trigger(Guard.transition(table_name, column, **options))
      end

      def remove_transition_guard(table_name, column, **options)
        drop_raceguard_trigger(Guard.transition(table_name, column, **options))
      end

      private

      def create_raceguard_trigger(definition)
        arguments = definition.arguments.map { |argument| quote(argument) }.join(", ")
        # One line, built without squish: squish would also collapse the
        # blanks inside quoted names and arguments (a state "\ttab").
        execute("CREATE TRIGGER #{quote_column_name(definition.name)} " \
                "BEFORE #{definition.events.join(' OR ')} ON #{quote_table_name(definition.table)} " \
                "FOR EACH ROW EXECUTE FUNCTION raceguard.#{definition.function}(#{arguments})")
        raceguard_guards_changed!
      end

      # Drops the trigger only if it is the guard the helper describes, so a
      # remove_* with the wrong arguments cannot drop another trigger. A
      # transition guard must also have the edges given (they are all it
      # is), so that reverting the removal recreates the guard it dropped.
      def drop_raceguard_trigger(definition)
        guard, nargs, hex_args = select_rows(
          "SELECT g.guard, t.tgnargs, pg_catalog.encode(t.tgargs, 'hex') FROM raceguard.guards g " \
          "JOIN pg_catalog.pg_trigger t ON t.tgrelid = g.table_name AND t.tgname = g.trigger_name " \
          "WHERE g.table_name = #{quote(quote_table_name(definition.table))}::regclass " \
          "AND g.trigger_name = #{quote(definition.name)}"
        ).first
        unless guard == definition.function
          raise ArgumentError, "table #{definition.table} has no raceguard.#{definition.function} guard named " \
                               "#{definition.name.inspect}#{guard ? " (it is a #{guard} guard)" : ''}"
        end
        arguments = Guard.trigger_arguments(nargs, hex_args)
        if definition.kind == :transition && arguments != definition.arguments
          raise ArgumentError, "the transition guard #{definition.name.inspect} on #{definition.table} has the " \
                               "arguments #{arguments.inspect}, not #{definition.arguments.inspect}"
        end
        execute("DROP TRIGGER #{quote_column_name(definition.name)} ON #{quote_table_name(definition.table)}")
        raceguard_guards_changed!
      end
    end
  end
end
