# frozen_string_literal: true

module Raceguard
  module Rails
    # Makes `db:schema:dump` in the sql format work as an application role,
    # and its structure.sql load into a database made from a template that
    # already holds raceguard. Left alone, pg_dump (1) reads the extension's
    # lease token sequence (a configuration sequence, pg_extension_config_dump),
    # which only a superuser may, so the dump fails for an application role;
    # (2) writes the extension's schema as `CREATE SCHEMA raceguard;` (the
    # schema is not a member of the extension), which fails in a database
    # made from the template ("schema "raceguard" already exists"); and (3)
    # writes `COMMENT ON EXTENSION raceguard`, which only the extension's
    # owner may run. So the schema raceguard is left out of the dump (it
    # holds nothing but the extension's own objects), `CREATE SCHEMA IF NOT
    # EXISTS raceguard;` is written before `CREATE EXTENSION IF NOT EXISTS
    # raceguard WITH SCHEMA raceguard;` (so a superuser can still load the
    # file into an empty database), and the comment is dropped (CREATE
    # EXTENSION sets it). Every guard's CREATE TRIGGER stays.
    module StructureDump
      EXCLUDE = "--exclude-schema=raceguard"
      EXTENSION = /^CREATE EXTENSION IF NOT EXISTS raceguard WITH SCHEMA raceguard;$/.freeze
      SCHEMA = /^CREATE SCHEMA raceguard;\n/.freeze
      COMMENT = /^COMMENT ON EXTENSION raceguard IS .*;\n/.freeze

      def structure_dump(filename, extra_flags)
        flags = Array(extra_flags)
        super(filename, flags.include?(EXCLUDE) ? flags : flags + [EXCLUDE])
        StructureDump.make_loadable(filename)
      end

      def self.make_loadable(filename)
        sql = File.read(filename)
        loadable = sql.sub(SCHEMA, "").sub(COMMENT, "")
                      .sub(EXTENSION) { "CREATE SCHEMA IF NOT EXISTS raceguard;\n#{Regexp.last_match(0)}" }
        File.write(filename, loadable) unless loadable == sql
      end
    end
  end
end
