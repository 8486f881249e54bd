# frozen_string_literal: true

# Drops the roles and databases of one run of the suite (named PREFIX_*), as
# the superuser in PGUSER; used by the suite itself and by run.sh's trap.
require "pg"

module RaceguardRailsCleanup
  def self.drop_all(prefix)
    raise ArgumentError, "prefix #{prefix.inspect} is not one of the suite's" unless prefix.match?(/\Argrails_\d+_[0-9a-f]+\z/)

    admin = PG.connect(dbname: "postgres")
    like = "#{prefix.gsub('_', '\\_')}\\_%"
    admin.exec_params("SELECT datname FROM pg_database WHERE datname LIKE $1", [like]).each do |row|
      name = admin.quote_ident(row["datname"])
      admin.exec("ALTER DATABASE #{name} IS_TEMPLATE false")
      admin.exec("DROP DATABASE #{name} WITH (FORCE)")
    end
    admin.exec_params("SELECT rolname FROM pg_roles WHERE rolname LIKE $1", [like]).each do |row|
      admin.exec("DROP ROLE #{admin.quote_ident(row['rolname'])}")
    end
  ensure
    admin&.close
  end
end

RaceguardRailsCleanup.drop_all(ARGV.fetch(0)) if $PROGRAM_NAME == __FILE__
