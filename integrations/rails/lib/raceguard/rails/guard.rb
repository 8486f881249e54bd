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
        running_balance: { function: "running_balance", events: %w[INSERT UPDATE DELETE], suffix: "running_balance" }
      }.freeze

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
