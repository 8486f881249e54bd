# frozen_string_literal: true

module Raceguard
  module Rails
    # Prepended to the PostgreSQL adapter, around ActiveRecord's own
    # enable_extension. A database made from a template that holds raceguard
    # already has it: CREATE EXTENSION IF NOT EXISTS is then a no-op for any
    # role. Without it, an application role cannot install the (untrusted)
    # extension: say what to do instead of a bare "permission denied".
    module ExtensionCheck
      def enable_extension(name, *rest, **options)
        super
      rescue ActiveRecord::StatementInvalid => e
        raise unless name.to_s == "raceguard" && e.cause.is_a?(PG::InsufficientPrivilege)

        # No query here: in a migration the transaction is aborted by now.
        raise ExtensionNotInstalled,
              "raceguard is not installed in database #{raw_connection.db.inspect}, and role " \
              "#{raw_connection.user.inspect} may not install it (the extension is untrusted: a superuser " \
              "installs it). Create the database from a template that holds raceguard, with `template:` in " \
              "config/database.yml (see \"Test databases for application roles\" in raceguard's docs/rails.md). " \
              "PostgreSQL said: #{e.cause.message.lines.first.strip}"
      end
    end
  end
end
