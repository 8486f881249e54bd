# frozen_string_literal: true

module Raceguard
  module Rails
    # Leases over ActiveRecord relations, through raceguard.claim_lease,
    # release_lease and extend_lease. Each call runs on a connection of its
    # own, checked out of the model's pool (which needs one connection more
    # than the threads that hold one), in autocommit: the lease neither waits
    # for nor rolls back with the caller's transaction.
    module Leases
      DEFAULT_COLUMNS = { token_column: "claim_token", until_column: "claimed_until" }.freeze

      # Model.where(...).lease(batch:, lease:, ...), as a class method every
      # relation delegates to with its own scope.
      module Relation
        def lease(**options)
          Leases.lease(all, **options)
        end
      end

      class << self
        # Leases up to batch rows matching the relation (its WHERE, joins and
        # order, compiled by ActiveRecord with its own quoting into a
        # subquery on the primary key), and returns them as records holding
        # their token. attempts: names the column counting leases,
        # max_attempts: the count at which a row is never leased again.
        def lease(relation, lease:, batch: 1, attempts: nil, max_attempts: nil,
                  token_column: DEFAULT_COLUMNS[:token_column], until_column: DEFAULT_COLUMNS[:until_column])
          klass = relation.klass
          if relation.limit_value || relation.offset_value
            raise ArgumentError, "lease takes batch: instead of a relation's limit or offset"
          end
          raise ArgumentError, "batch: must be a positive Integer, not #{batch.inspect}" unless batch.is_a?(Integer) && batch.positive?

          filter, order = compile(relation)
          with_own_connection(klass) do |connection|
            sql = "SELECT * FROM raceguard.claim_lease(NULL::#{connection.quote_table_name(klass.table_name)}, " \
                  "$1, $2, $3::interval, $4, $5, $6, $7, $8)"
            binds = [filter, batch, interval(lease, :lease), order, column(klass, token_column),
                     column(klass, until_column), attempts && column(klass, attempts), max_attempts]
            result = connection.exec_query(sql, "#{klass.name} Lease", binds)
            result.map { |row| klass.instantiate(row, result.column_types) }
          end
        end

        # Finishes a leased record's work: writes changes and clears its lease,
        # only if it still holds its token (fencing). True if it did; false
        # when the lease was lost (expired and taken by another worker).
        def complete(record, token_column: DEFAULT_COLUMNS[:token_column],
                     until_column: DEFAULT_COLUMNS[:until_column], **changes)
          assignments = changes.transform_keys(&:to_s).merge(token_column.to_s => nil, until_column.to_s => nil)
          fenced_update(record, token_column, assignments, "#{record.class.name} Complete lease")
        end

        # Gives this record's lease back (only this record's: the other rows
        # of the same lease call keep theirs), if it still holds it; claimable
        # again at once or, with retry_after:, from clock_timestamp() +
        # retry_after, as raceguard.release_lease() does for a whole token.
        def release(record, retry_after: nil, token_column: DEFAULT_COLUMNS[:token_column],
                    until_column: DEFAULT_COLUMNS[:until_column])
          delay = retry_after && delay(retry_after)
          fenced_update(record, token_column, { token_column.to_s => nil, until_column.to_s => nil },
                        "#{record.class.name} Release lease", delay: delay)
        end

        # Moves the expiry of the record's lease to now + lease, through
        # raceguard.extend_lease(): for every row leased by the same call (one
        # token per call). True if the record still held it.
        def extend_lease(record, lease:, token_column: DEFAULT_COLUMNS[:token_column],
                         until_column: DEFAULT_COLUMNS[:until_column])
          lease_call(record, "extend_lease", "$1, $2::interval, $3, $4",
                     [token_of(record, token_column), interval(lease, :lease),
                      column(record.class, token_column), column(record.class, until_column)])
        end

        # The relation's WHERE (and joins) as "pk IN (subquery)", and its
        # ORDER BY, as SQL ActiveRecord compiled with the connection's quoting:
        # no value is pasted into SQL by hand.
        def compile(relation)
          klass = relation.klass
          primary_key = klass.primary_key
          raise ArgumentError, "lease needs a model with a single-column primary key" unless primary_key.is_a?(String)

          orders = relation.arel.orders
          subquery = relation.unscope(:select, :order).select(klass.arel_table[primary_key])
          key = "#{klass.connection.quote_table_name(klass.table_name)}.#{klass.connection.quote_column_name(primary_key)}"
          filter = "#{key} IN (#{subquery.to_sql})"
          order = orders.empty? ? nil : orders.map { |node| order_sql(klass.connection, node) }.join(", ")
          [filter, order]
        end

        private

        # UPDATE of the record's row WHERE it still holds its token; with
        # delay:, the until column becomes clock_timestamp() + delay.
        def fenced_update(record, token_column, assignments, name, delay: nil)
          klass = record.class
          token = token_of(record, token_column)
          assignments.each_key { |column_name| column(klass, column_name) }
          version = klass.locking_enabled? ? klass.locking_column : nil
          until_column = delay && assignments.keys.last
          with_own_connection(klass) do |connection|
            binds = []
            sets = assignments.map do |column_name, value|
              if column_name == until_column
                binds << delay
                "#{connection.quote_column_name(column_name)} = pg_catalog.clock_timestamp() + $#{binds.size}::interval"
              else
                binds << attribute(klass, column_name, value)
                "#{connection.quote_column_name(column_name)} = $#{binds.size}"
              end
            end
            binds << attribute(klass, klass.primary_key, record.id) << attribute(klass, token_column, token)
            # The version too: a lease's writes bump a lock_version guard's.
            sql = "UPDATE #{connection.quote_table_name(klass.table_name)} SET #{sets.join(', ')} " \
                  "WHERE #{connection.quote_column_name(klass.primary_key)} = $#{binds.size - 1} " \
                  "AND #{connection.quote_column_name(token_column)} = $#{binds.size} " \
                  "RETURNING #{connection.quote_column_name(version || klass.primary_key)}, " \
                  "#{connection.quote_column_name(assignments.keys.last)}"
            result = connection.exec_query(sql, name, binds)
            next false if result.rows.empty?

            values = assignments.merge(assignments.keys.last => result.cast_values.first.last)
            values[version] = result.rows.first.first if version
            record.assign_attributes(values)
            record.clear_attribute_changes(values.keys)
            true
          end
        end

        def lease_call(record, function, arguments, binds)
          klass = record.class
          with_own_connection(klass) do |connection|
            sql = "SELECT raceguard.#{function}(NULL::#{connection.quote_table_name(klass.table_name)}, #{arguments})"
            connection.select_value(sql, "#{klass.name} #{function}", binds).to_i.positive?
          end
        end

        def with_own_connection(klass)
          pool = klass.connection_pool
          connection = pool.checkout
          begin
            yield connection
          ensure
            pool.checkin(connection)
          end
        end

        def order_sql(connection, node)
          node.is_a?(String) ? node : connection.visitor.compile(node)
        end

        def token_of(record, token_column)
          token = record[column(record.class, token_column)]
          raise ArgumentError, "#{record.class.name} #{record.id.inspect} holds no lease (#{token_column} is nil)" if token.nil?

          token
        end

        def column(klass, name)
          name = name.to_s
          raise ArgumentError, "#{klass.name} has no column #{name.inspect}" unless klass.column_names.include?(name)

          name
        end

        def attribute(klass, name, value)
          ActiveRecord::Relation::QueryAttribute.new(name, value, klass.type_for_attribute(name))
        end

        # A lease length as an interval literal: an ActiveSupport::Duration
        # (5.minutes), a number of seconds, or PostgreSQL interval text.
        def interval(value, option)
          case value
          when ActiveSupport::Duration then value.iso8601
          when Numeric then "#{value} seconds"
          when String then value
          else raise ArgumentError, "#{option}: must be a Duration, a number of seconds or interval text, not #{value.inspect}"
          end
        end

        # retry_after: a Duration or a number of seconds, not negative.
        def delay(value)
          unless (value.is_a?(Numeric) || value.is_a?(ActiveSupport::Duration)) && value >= 0
            raise ArgumentError, "retry_after: must be a Duration or a number of seconds, not negative, not #{value.inspect}"
          end

          interval(value, :retry_after)
        end
      end
    end
  end
end
