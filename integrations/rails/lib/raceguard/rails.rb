# frozen_string_literal: true

require "json"
require "active_record"
require "raceguard/rails/version"

module Raceguard
  # The integration of the raceguard PostgreSQL extension with ActiveRecord.
  # Inside this namespace ::Rails is the framework; Raceguard::Rails is us.
  module Rails
    autoload :Guard, "raceguard/rails/guard"
    autoload :MigrationHelpers, "raceguard/rails/migration_helpers"
    autoload :ExtensionCheck, "raceguard/rails/extension_check"
    autoload :CommandRecorder, "raceguard/rails/command_recorder"
    autoload :GuardCatalog, "raceguard/rails/guard_catalog"
    autoload :ErrorMapping, "raceguard/rails/error_mapping"
    autoload :SchemaDumper, "raceguard/rails/schema_dumper"
    autoload :StructureDump, "raceguard/rails/structure_dump"
    autoload :Leases, "raceguard/rails/leases"

    # Raised by enable_extension "raceguard" when the database lacks the
    # extension and the role may not install it.
    class ExtensionNotInstalled < ActiveRecord::ActiveRecordError; end

    LOCALE = File.expand_path("rails/locale/en.yml", __dir__)

    class << self
      # Hooks the gem into ActiveRecord; run once, when ActiveRecord loads.
      def install!
        return if @installed

        require "active_record/connection_adapters/postgresql_adapter"
        adapter = ActiveRecord::ConnectionAdapters::PostgreSQLAdapter
        adapter.include(MigrationHelpers)
        adapter.include(GuardCatalog)
        adapter.prepend(ExtensionCheck)
        ActiveRecord::Migration::CommandRecorder.include(CommandRecorder)
        ActiveRecord::ConnectionAdapters::PostgreSQL::SchemaDumper.prepend(SchemaDumper)
        ActiveRecord::Base.prepend(ErrorMapping)
        ActiveRecord::Base.extend(Leases::Relation)
        I18n.load_path << LOCALE unless I18n.load_path.include?(LOCALE)
        @installed = true
      end

      # Hooks the structure.sql dump; run when the database tasks load (the
      # Railtie does, from rake_tasks: requiring them while ActiveRecord::Base
      # loads would be circular).
      def install_tasks!
        return if @tasks_installed

        require "active_record/tasks/postgresql_database_tasks"
        ActiveRecord::Tasks::PostgreSQLDatabaseTasks.prepend(StructureDump)
        @tasks_installed = true
      end

      # Leases up to batch rows of relation; see Leases.
      def lease(relation, **options)
        Leases.lease(relation, **options)
      end

      def complete(record, **changes)
        Leases.complete(record, **changes)
      end

      def release(record, **options)
        Leases.release(record, **options)
      end

      def extend_lease(record, **options)
        Leases.extend_lease(record, **options)
      end
    end
  end
end

if defined?(::Rails::Railtie)
  require "raceguard/rails/railtie"
else
  ActiveSupport.on_load(:active_record) { Raceguard::Rails.install! }
end
