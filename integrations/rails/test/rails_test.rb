# frozen_string_literal: true

# The raceguard-rails suite (run by run.sh, which builds and installs the
# gem first). A Rails application, made from test/app and the migrations
# and models docs/rails.md shows, runs as an application role with CREATEDB
# only, against databases made from a template that holds raceguard. The
# steps depend on each other and run in order.
require "fileutils"
require "json"
require "open3"
require "pg"
require "securerandom"
require "minitest/autorun"
require_relative "cleanup"

SEED = Integer(ENV.fetch("RACEGUARD_SEED") { Random.new_seed % (1 << 31) })
puts "raceguard-rails: RACEGUARD_SEED=#{SEED}"
RANDOM = Random.new(SEED)

PREFIX = ENV.fetch("RACEGUARD_RAILS_PREFIX")
ROLE = "#{PREFIX}_app"
PASSWORD = SecureRandom.hex(16)
TEMPLATE = "#{PREFIX}_template"
DEV_DB = "#{PREFIX}_dev"
TEST_DB = "#{PREFIX}_test"
DOCS = File.expand_path("../../../docs/rails.md", __dir__)
APP = File.join(ENV.fetch("RACEGUARD_RAILS_WORK"), "app")

# The fences of docs/rails.md marked with <!-- rails-test: KIND [ARG] -->:
# [kind, arg, body, line of the fence's first body line].
def docs_fences
  lines = File.read(DOCS).lines
  fences = []
  lines.each_with_index do |line, i|
    next unless (marker = line.match(/\A<!-- rails-test: (\w+)(?: (\S+))? -->\s*\z/))

    raise "docs/rails.md:#{i + 2}: a rails-test marker must precede a fence" unless lines[i + 1]&.start_with?("```")

    close = (i + 2...lines.size).find { |j| lines[j].start_with?("```") }
    fences << [marker[1], marker[2], lines[i + 2...close].join, i + 3]
  end
  fences
end

module Cluster
  module_function

  def admin(dbname = "postgres")
    connection = PG.connect(dbname: dbname)
    connection.exec("SET client_min_messages = warning")
    return connection unless block_given?

    begin
      yield connection
    ensure
      connection.close
    end
  end

  def as_app(dbname)
    connection = PG.connect(dbname: dbname, user: ROLE, password: PASSWORD)
    yield connection
  ensure
    connection&.close
  end

  def values(dbname, sql, params = [])
    admin(dbname) { |c| c.exec_params(sql, params).values }
  end

  # Every guard, as raceguard.guards shows it.
  def guards(dbname)
    values(dbname, <<~SQL)
      SELECT table_name::text, trigger_name, guard, columns::text, options::text, timing, events::text, enabled
        FROM raceguard.guards ORDER BY 1, 2
    SQL
  end

  # Every user trigger.
  def triggers(dbname)
    values(dbname, "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2")
  end

  def database?(dbname)
    values("postgres", "SELECT 1 FROM pg_database WHERE datname = $1", [dbname]).any?
  end
end

# The application's environment, for rake and for the app loaded in this process.
APP_ENV = {
  "RACEGUARD_APP_ROLE" => ROLE, "RACEGUARD_APP_PASSWORD" => PASSWORD, "RACEGUARD_TEMPLATE" => TEMPLATE,
  "RACEGUARD_DEV_DB" => DEV_DB, "RACEGUARD_TEST_DB" => TEST_DB, "RAILS_ENV" => "development"
}.freeze

def rake(*tasks, env: {})
  Open3.capture3(APP_ENV.merge(env), "rake", *tasks, chdir: APP)
end

def rake!(*tasks, env: {})
  out, err, status = rake(*tasks, env: env)
  raise "rake #{tasks.join(' ')} failed (#{status}):\n#{out}\n#{err}" unless status.success?

  out
end

def set_up_cluster
  Cluster.admin do |c|
    c.exec("CREATE ROLE #{c.quote_ident(ROLE)} LOGIN CREATEDB PASSWORD #{c.escape_literal(PASSWORD)}")
    c.exec("CREATE DATABASE #{c.quote_ident(TEMPLATE)}")
  end
  Cluster.admin(TEMPLATE) { |c| c.exec("CREATE EXTENSION raceguard") }
  Cluster.admin { |c| c.exec("ALTER DATABASE #{c.quote_ident(TEMPLATE)} IS_TEMPLATE true") }
end

def make_app
  FileUtils.rm_rf(APP)
  FileUtils.cp_r(File.join(__dir__, "app"), APP)
  docs_fences.each do |kind, path, body, _line|
    next unless kind == "file"

    FileUtils.mkdir_p(File.dirname(File.join(APP, path)))
    File.write(File.join(APP, path), body)
  end
end

set_up_cluster
make_app
Minitest.after_run { RaceguardRailsCleanup.drop_all(PREFIX) }

EXPECTED_GUARDS = [
  ["conversations", "conversations_texter_id_write_once", "immutable_once_set", "{texter_id}",
   '{"allow_unset": false}', "BEFORE", "{UPDATE}", "t"],
  ["documents", "documents_revision_guard", "lock_version", "{revision}",
   '{"strict": false, "sqlstate": "40001"}', "BEFORE", "{INSERT,UPDATE}", "t"],
  ["entries", "entries_balance_running_balance", "running_balance", "{amount,balance,account_id}",
   '{"seq": "entry_no", "initial": 0, "min_balance": 0}', "BEFORE", "{INSERT,UPDATE,DELETE}", "t"],
  ["invoices", "invoices_status_transition", "transition", "{status}",
   '{"edges": [">NULL", ">pending", "pending>sent", "sent>paid", "sent>pending"]}', "BEFORE", "{INSERT,UPDATE}", "t"],
  ["orders", "orders_lock_version_guard", "lock_version", "{lock_version}",
   '{"strict": true, "sqlstate": "40001"}', "BEFORE", "{INSERT,UPDATE}", "t"],
  ["tickets", "tickets_status_transition", "transition", "{status}",
   '{"edges": [">open", "open>assigned", "assigned>closed", "assigned>open"]}', "BEFORE", "{INSERT,UPDATE}", "t"]
].freeze

# States a transition guard must take exactly as written: quotes, the
# guard's own syntax (>, =, "), blanks at either end, the text NULL in any
# case beside the NULL state, SQL and unicode; and a few random ones.
def hostile_states
  fixed = ["it's", 'say "hi"', "a>b", "x=y", '">"', "NULL", "null", " lead", "trail ", "\ttab", "line\nbreak",
           "", "back\\slash", "ünïcödé 🚀", "'); DROP TABLE tickets; --", "%{to}", "\#{1}", ">", "=", '"']
  random = Random.new(SEED)
  (fixed + Array.new(4) { Array.new(random.rand(1..10)) { random.rand(32..0x24f).chr(Encoding::UTF_8) }.join }).uniq
end

class RailsTest < Minitest::Test
  def self.test_order
    :alpha
  end

  # The application, loaded into this process (after the migrations ran).
  def app!
    return if defined?(::Rails.application) && ::Rails.application&.initialized?

    APP_ENV.each { |key, value| ENV[key] = value }
    require File.join(APP, "config/environment")
    installed = Gem.loaded_specs.fetch("raceguard-rails")
    assert installed.full_gem_path.start_with?(ENV.fetch("RACEGUARD_RAILS_GEM_DIR")),
           "raceguard-rails comes from the built .gem, not from #{installed.full_gem_path}"
  end

  def connection
    ActiveRecord::Base.connection
  end

  # Runs the block in n threads at once, each on its own connection; returns
  # each thread's result (or the exception it raised).
  def race(count)
    gate = Queue.new
    threads = Array.new(count) do |i|
      Thread.new do
        ActiveRecord::Base.connection_pool.with_connection do
          gate.pop
          begin
            yield i
          rescue StandardError => e
            e
          end
        end
      end
    end
    count.times { gate << :go }
    threads.map(&:value)
  end

  # Loads `workers` copies of record and saves each at once, in its own
  # thread, with the block; checks that exactly one won. Returns the copies,
  # each one's result, and the winner's index.
  def race_on_copies(record, workers)
    copies = Array.new(workers) { record.class.find(record.id) }
    results = race(workers) { |i| yield copies[i], i }
    assert_equal 1, results.count(true), "one winner: #{results.inspect}"
    [copies, results, results.index(true)]
  end

  def test_01_migrations_run_as_the_application_role_from_the_template
    roles = Cluster.values("postgres", "SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = $1", [ROLE])
    assert_equal [%w[f t]], roles, "the application role is CREATEDB only"
    rake!("db:create", "db:migrate")
    assert_equal [[ROLE]], Cluster.values("postgres",
                                          "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", [DEV_DB])
    assert_equal EXPECTED_GUARDS, Cluster.guards(DEV_DB)
    assert_empty Cluster.values(DEV_DB, "SELECT * FROM raceguard.check_guards()")
    out = rake!("raceguard:check")
    assert_match(/no problems/, out)
  end

  def test_02_each_rollback_removes_exactly_its_trigger
    expected_order = %w[invoices_status_transition tickets_status_transition entries_balance_running_balance conversations_texter_id_write_once
                        documents_revision_guard orders_lock_version_guard]
    expected_order.each do |trigger|
      before = Cluster.triggers(DEV_DB)
      rake!("db:rollback")
      after = Cluster.triggers(DEV_DB)
      assert_equal [trigger], (before - after).map(&:last), "rolling back removes #{trigger} only"
      assert_empty after - before
    end
    assert_empty Cluster.guards(DEV_DB)
    rake!("db:migrate")
    assert_equal EXPECTED_GUARDS, Cluster.guards(DEV_DB)
  end

  def test_03_docs_examples
    app!
    fences = docs_fences.select { |kind, _, _, _| kind == "run" }
    assert_operator fences.size, :>=, 5
    checks = fences.sum { |_, _, body, _| body.scan(/# (=>|raises) /).size }
    assert_operator checks, :>=, 25, "the examples' results are checked"
    fences.each { |_, _, body, line| run_docs_fence(body, line) }
  end

  # Runs a ```ruby fence line by line; `stmt # => value` asserts the value,
  # `stmt # raises Class` asserts the exception.
  def run_docs_fence(body, first_line)
    scope = Object.new.instance_eval { binding }
    body.lines(chomp: true).each.with_index(first_line) do |line, number|
      where = "docs/rails.md:#{number}: #{line.strip}"
      if (m = line.match(/\A(.*?)\s+# => (.*)\z/))
        expected = scope.eval(m[2])
        expected.nil? ? assert_nil(scope.eval(m[1]), where) : assert_equal(expected, scope.eval(m[1]), where)
      elsif (m = line.match(/\A(.*?)\s+# raises (\S+)\s*\z/))
        assert_raises(Object.const_get(m[2]), where) { scope.eval(m[1]) }
      else
        scope.eval(line)
      end
    end
  end

  def test_04_bad_inputs_raise_and_create_nothing
    app!
    before = Cluster.triggers(DEV_DB)
    bad = {
      -> { connection.add_lock_version_guard :orders, column: :nope, name: "orders_nope" } => ActiveRecord::StatementInvalid,
      -> { connection.add_lock_version_guard :orders, strict: "yes" } => ArgumentError,
      -> { connection.add_lock_version_guard :orders, sqlstate: "12345" } => ArgumentError,
      -> { connection.add_lock_version_guard :orders, stict: true } => ArgumentError,
      -> { connection.add_lock_version_guard :orders, column: "a=b" } => ArgumentError,
      -> { connection.add_lock_version_guard :orders, name: "n" * 64 } => ArgumentError,
      -> { connection.add_write_once_guard :conversations } => ArgumentError,
      -> { connection.add_write_once_guard :conversations, :texter, name: "c_texter" } => ActiveRecord::StatementInvalid,
      -> { connection.add_write_once_guard :conversations, :texter_id, allow_unset: 1 } => ArgumentError,
      -> { connection.add_running_balance_guard :entries, amount: :amount, balance: :balance, seq: :entry_no, min_balance: "abc" } => ArgumentError,
      -> { connection.add_running_balance_guard :entries, amount: :amount, balance: :balance, seq: :entry_no, initial: 1.5 } => ArgumentError,
      # no index on (seq) for a ledger without groups
      -> { connection.add_running_balance_guard :entries, amount: :amount, balance: :balance, seq: :entry_no, name: "e_nogroup" } => ActiveRecord::StatementInvalid,
      -> { connection.add_running_balance_guard :entries, amount: :amount, seq: :entry_no } => ArgumentError,
      -> { connection.remove_write_once_guard :orders, :billing } => ArgumentError,
      -> { connection.remove_lock_version_guard :conversations, column: :texter_id, name: "conversations_texter_id_write_once" } => ArgumentError,
      -> { connection.add_lock_version_guard :no_such_table } => ActiveRecord::StatementInvalid,
      -> { connection.add_transition_guard :tickets, :stauts, start: ["open"], name: "t_bad" } => ActiveRecord::StatementInvalid,
      # a state the column's type rejects: a word for an integer
      -> { connection.add_transition_guard :orders, :total, start: [0], edges: { 0 => "one" } } => ActiveRecord::StatementInvalid,
      -> { connection.add_transition_guard :tickets, :status, name: "t_bad" } => ArgumentError,
      -> { connection.add_transition_guard :tickets, :status, edges: {}, start: [], name: "t_bad" } => ArgumentError,
      -> { connection.add_transition_guard :tickets, :status, edges: { "open" => [] }, name: "t_bad" } => ArgumentError,
      -> { connection.add_transition_guard :tickets, :status, edges: [%w[open closed]], name: "t_bad" } => ArgumentError,
      -> { connection.add_transition_guard :tickets, :status, start: [1.5], name: "t_bad" } => ArgumentError,
      -> { connection.add_transition_guard :tickets, :status, start: ["a\0b"], name: "t_bad" } => ArgumentError,
      -> { connection.add_transition_guard :tickets, "", start: ["open"], name: "t_bad" } => ArgumentError,
      -> { connection.add_transition_guard :tickets, :status, start: ["open"], stat: 1 } => ArgumentError,
      # the same edge twice (raceguard's 22023)
      -> { connection.add_transition_guard :tickets, :status, edges: { "open" => %w[closed closed] }, name: "t_bad" } => ActiveRecord::StatementInvalid,
      -> { connection.remove_transition_guard :orders, :lock_version, start: [0], name: "orders_lock_version_guard" } => ArgumentError,
      # other edges than the guard's: not the guard the helper describes
      -> { connection.remove_transition_guard :tickets, :status, start: ["open"] } => ArgumentError
    }
    bad.each_with_index do |(call, error), i|
      raised = assert_raises(error, "bad input #{i}") { connection.transaction { call.call } }
      refute_empty raised.message
      assert_equal before, Cluster.triggers(DEV_DB), "bad input #{i} created or dropped nothing"
    end
    unknown = assert_raises(ActiveRecord::StatementInvalid) do
      connection.transaction { connection.add_lock_version_guard :orders, column: :nope, name: "orders_nope" }
    end
    assert_kind_of PG::UndefinedColumn, unknown.cause
    assert_match(/column "nope" does not exist/, unknown.message)
    typo = assert_raises(ActiveRecord::StatementInvalid) do
      connection.transaction { connection.add_transition_guard :orders, :total, start: [0], edges: { 0 => "one" } }
    end
    assert_kind_of PG::InvalidTextRepresentation, typo.cause
    assert_match(/state "one" in edge "0>one" is not a value of column "total"/, typo.message)
    empty = assert_raises(ArgumentError) { connection.add_transition_guard :tickets, :status }
    assert_match(/at least one start state or edge/, empty.message)

    # A migration with a misspelt column fails as a whole and is not recorded.
    path = File.join(APP, "db/migrate/20260101000099_misspelt_guard.rb")
    File.write(path, <<~RUBY)
      class MisspeltGuard < ActiveRecord::Migration[6.1]
        def change
          add_column :conversations, :counselor_id, :integer
          add_write_once_guard :conversations, :counselor
        end
      end
    RUBY
    begin
      _out, err, status = rake("db:migrate")
      refute status.success?
      assert_match(/column "counselor" does not exist/, err)
      assert_empty Cluster.values(DEV_DB, "SELECT 1 FROM schema_migrations WHERE version = '20260101000099'")
      assert_empty Cluster.values(DEV_DB, "SELECT 1 FROM pg_attribute WHERE attrelid = 'conversations'::regclass AND attname = 'counselor_id'")
      assert_equal before, Cluster.triggers(DEV_DB)
    ensure
      File.delete(path)
    end
  end

  def test_05_remove_helpers_and_their_reversal
    app!
    ActiveRecord::Migration.verbose = false
    connection.remove_lock_version_guard :orders, strict: true
    refute_includes Cluster.triggers(DEV_DB), %w[orders orders_lock_version_guard]
    migration = ActiveRecord::Migration.new
    migration.revert { migration.remove_lock_version_guard :orders, strict: true }
    assert_equal EXPECTED_GUARDS, Cluster.guards(DEV_DB)
  end

  # Guards the helpers cannot rebuild exactly, added by hand: the dump keeps
  # them with `execute`.
  def add_hand_made_guards
    connection.execute(<<~SQL)
      CREATE TABLE legacy (id integer PRIMARY KEY, lock_version integer, owner_id integer, note text);
      CREATE TRIGGER legacy_lock_version BEFORE INSERT OR UPDATE ON legacy
          FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
      CREATE TRIGGER legacy_owner_constraint AFTER UPDATE ON legacy
          FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner_id', 'allow_unset=on');
      CREATE TABLE ledger (id bigserial PRIMARY KEY, amount numeric(12,2) NOT NULL, balance numeric(12,2),
                           n integer, "Currency" text NOT NULL);
      CREATE UNIQUE INDEX ledger_chain ON ledger ("Currency", n);
    SQL
    connection.add_write_once_guard :legacy, :note, :owner_id, allow_unset: true, name: %(legacy "odd" name)
    connection.execute(%(ALTER TABLE legacy DISABLE TRIGGER "legacy ""odd"" name"))
    connection.add_running_balance_guard :ledger, amount: :amount, balance: :balance, group: "Currency", seq: :n,
                                                  initial: BigDecimal("12.50"), min_balance: -100
    # A chain through every hostile state, from NULL and back to NULL; and a
    # transition guard written by hand in a form the helper does not write.
    states = hostile_states
    connection.create_table(:hostile) { |t| t.text :status; t.text :"odd \"col\" >=" }
    connection.add_transition_guard :hostile, :status, start: [nil], name: %(hostile "status"),
                                                       edges: ([nil] + states).zip(states + [nil]).to_h
    connection.add_transition_guard :hostile, %(odd "col" >=), start: ["NULL", nil], edges: { "NULL" => ["null", nil] },
                                                               name: "hostile  odd\tname"
    connection.execute(<<~SQL)
      CREATE TRIGGER legacy_by_hand BEFORE INSERT OR UPDATE ON legacy
          FOR EACH ROW EXECUTE FUNCTION raceguard.transition('note', '>null', 'null>"a"', '"a">b');
    SQL
  end

  def test_06_schema_rb_keeps_every_guard
    app!
    add_hand_made_guards
    source = Cluster.guards(DEV_DB)
    assert_equal 13, source.size
    rake!("db:schema:dump")
    schema = File.read(File.join(APP, "db/schema.rb"))
    documented = docs_fences.find { |kind, _, _, _| kind == "schema" }
    documented[2].each_line { |line| assert_includes schema, line, "schema.rb has the line docs/rails.md shows" }
    assert_includes schema, %(add_write_once_guard "legacy", "note", "owner_id", allow_unset: true, name: "legacy \\"odd\\" name")
    assert_includes schema, %(add_running_balance_guard "ledger", amount: "amount", balance: "balance", group: ["Currency"], seq: "n", min_balance: -100, initial: "12.5", name: "ledger_balance_running_balance")
    assert_match(/^  execute "CREATE TRIGGER legacy_lock_version /, schema)
    assert_match(/^  execute "CREATE TRIGGER legacy_owner_constraint AFTER UPDATE/, schema)
    assert_match(/^  add_transition_guard "hostile", "status", start: \[nil\], edges: \{ nil => \["it's"\], "it's" => \["say \\"hi\\""\], /, schema)
    assert_includes schema, %(add_transition_guard "hostile", "odd \\"col\\" >=", start: ["NULL", nil], edges: { "NULL" => ["null", nil] }, name: "hostile  odd\\tname")
    assert_match(/^  execute "CREATE TRIGGER legacy_by_hand /, schema)
    assert_match(/^  execute "ALTER TABLE \\"legacy\\" DISABLE TRIGGER \\"legacy \\"\\"odd\\"\\" name\\""/, schema)

    loaded = "#{PREFIX}_schema_rb"
    rake!("db:create", "db:schema:load", env: { "RACEGUARD_DEV_DB" => loaded, "RACEGUARD_TEST_DB" => "#{loaded}_test" })
    assert_equal source, Cluster.guards(loaded), "db:schema:load recreates every guard with its options"
    rake!("db:test:prepare")
    assert_equal source, Cluster.guards(TEST_DB), "db:test:prepare too"
  end

  def test_07_structure_sql_loads_into_a_database_made_from_the_template
    source = Cluster.guards(DEV_DB)
    # pg_dump's own output, as Rails runs it, fails there.
    raw = File.join(APP, "db/raw.sql")
    _, err, status = Open3.capture3("pg_dump", "--schema-only", "--no-privileges", "--no-owner", "--file", raw, DEV_DB)
    assert status.success?, err
    raw_target = "#{PREFIX}_raw"
    Cluster.as_app("postgres") { |c| c.exec("CREATE DATABASE #{c.quote_ident(raw_target)} TEMPLATE #{c.quote_ident(TEMPLATE)}") }
    _, err, status = Open3.capture3({ "PGUSER" => ROLE, "PGPASSWORD" => PASSWORD },
                                    "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", raw, raw_target)
    refute status.success?
    assert_match(/schema "raceguard" already exists/, err)

    sql_env = { "RACEGUARD_SCHEMA_FORMAT" => "sql" }
    rake!("db:schema:dump", env: sql_env)
    structure = File.read(File.join(APP, "db/structure.sql"))
    assert_includes structure, "CREATE SCHEMA IF NOT EXISTS raceguard;"
    refute_match(/^CREATE SCHEMA raceguard;/, structure)
    assert_match(/^CREATE SCHEMA IF NOT EXISTS raceguard;\nCREATE EXTENSION IF NOT EXISTS raceguard WITH SCHEMA raceguard;$/, structure)
    refute_match(/^COMMENT ON EXTENSION raceguard/, structure)
    loaded = "#{PREFIX}_structure"
    rake!("db:create", "db:schema:load",
          env: sql_env.merge("RACEGUARD_DEV_DB" => loaded, "RACEGUARD_TEST_DB" => "#{loaded}_test"))
    assert_equal source, Cluster.guards(loaded), "structure.sql recreates every guard"

    # A superuser can still load it into an empty database (no template).
    empty = "#{PREFIX}_structure_empty"
    Cluster.admin { |c| c.exec("CREATE DATABASE #{c.quote_ident(empty)}") }
    _, err, status = Open3.capture3("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f",
                                    File.join(APP, "db/structure.sql"), empty)
    assert status.success?, err
    assert_equal source, Cluster.guards(empty), "structure.sql into an empty database, as a superuser"
  end

  def test_08_without_the_template_the_error_says_what_to_do
    plain = "#{PREFIX}_plain"
    _out, err, status = rake("db:create", "db:migrate", env: { "RACEGUARD_TEMPLATE" => "", "RACEGUARD_DEV_DB" => plain })
    refute status.success?
    assert_includes err, "Raceguard::Rails::ExtensionNotInstalled"
    documented = File.read(DOCS)[/^raceguard is not installed in database .*$/]
    expected = documented.sub('"shop_test"', plain.inspect).sub('role "shop"', "role #{ROLE.inspect}")
    assert_includes err, expected
    assert_empty Cluster.values(plain, "SELECT 1 FROM pg_extension WHERE extname = 'raceguard'")
    assert_empty Cluster.values(plain, "SELECT 1 FROM pg_trigger WHERE NOT tgisinternal")
  end

  def test_09_write_once_race_has_one_winner_and_validation_errors
    app!
    rounds = 5
    rounds.times do |round|
      workers = RANDOM.rand(2..5)
      conversation = Conversation.create!(topic: "round #{round}")
      bang = RANDOM.rand(2).zero?
      copies, results, winner = race_on_copies(conversation, workers) do |copy, i|
        bang ? copy.update!(texter_id: 1000 + i) : copy.update(texter_id: 1000 + i)
      end
      (results.each_index.to_a - [winner]).each do |i|
        if bang
          assert_kind_of ActiveRecord::RecordInvalid, results[i]
        else
          assert_equal false, results[i]
        end
        assert_equal [{ error: :write_once }], copies[i].errors.details[:texter_id]
      end
      assert_equal 1000 + winner, conversation.reload.texter_id
    end
  end

  def test_10_rails_locking_with_a_strict_guard_loses_nothing
    app!
    5.times do |round|
      workers = RANDOM.rand(2..5)
      order = Order.create!(billing: "round #{round}")
      _, results, = race_on_copies(order, workers) { |copy, i| copy.update!(total: copy.total + i + 1) }
      assert_equal workers - 1, results.count { |r| r.is_a?(ActiveRecord::StaleObjectError) }

      # Retrying each lost update from a fresh read: every change lands once.
      deltas = Array.new(workers) { RANDOM.rand(1..100) }
      start_total, start_version = order.reload.total, order.lock_version
      race(workers) do |i|
        begin
          fresh = Order.find(order.id)
          fresh.update!(total: fresh.total + deltas[i])
        rescue ActiveRecord::StaleObjectError
          retry
        end
      end
      order.reload
      assert_equal start_total + deltas.sum, order.total
      assert_equal start_version + workers, order.lock_version
    end
    # update_all with a Hash adds a relative increment of the version: accepted.
    assert_equal Order.count, Order.update_all(billing: "bulk")
    # Blind writes: refused by strict: true.
    blind = assert_raises(ActiveRecord::SerializationFailure) { Order.update_all("billing = 'blind'") }
    assert_match(/stale write/, blind.message)
    assert_raises(ActiveRecord::SerializationFailure) { Order.first.update_columns(billing: "blind") }
    # increment! is a relative increment of the counter and of the version.
    counted = Order.first
    assert counted.increment!(:total)
    assert_equal counted.total, Order.find(counted.id).total
  end

  def test_11_echo_versions_stale_writes_are_stale_object_errors
    app!
    5.times do |round|
      workers = RANDOM.rand(2..5)
      document = Document.create!(body: "round #{round}")
      _, results, winner = race_on_copies(document, workers) { |copy, i| copy.update(body: "by #{i}") }
      (results - [true]).each do |error|
        assert_kind_of ActiveRecord::StaleObjectError, error
        assert_kind_of ActiveRecord::SerializationFailure, error.cause
      end
      assert_equal ["by #{winner}", 2], Document.where(id: document.id).pick(:body, :revision)
    end
  end

  def test_12_ledger_appends_race_and_refusals_are_validation_errors
    app!
    accounts = [1, 2, 3]
    accepted = Queue.new
    refused = Queue.new
    race(5) do |worker|
      random = Random.new(SEED + worker)
      random.rand(5..12).times do
        account = accounts.sample(random: random)
        amount = BigDecimal(random.rand(-60..100).nonzero? || 1)
        entry = Entry.create(account_id: account, amount: amount)
        (entry.persisted? ? accepted : refused) << entry
      end
    end
    accepted = Array.new(accepted.size) { accepted.pop }
    refused = Array.new(refused.size) { refused.pop }
    refute_empty accepted
    refused.each do |entry|
      assert_operator entry.amount, :<, 0
      assert_equal({ amount: [{ error: :below_min_balance }] }, entry.errors.details)
    end
    accounts.each do |account|
      mine = accepted.select { |entry| entry.account_id == account }
      rows = Entry.where(account_id: account).order(:entry_no).pluck(:entry_no, :amount, :balance)
      assert_equal mine.size, rows.size, "account #{account}: every accepted append is stored once"
      assert_equal (1..rows.size).to_a, rows.map(&:first)
      assert_equal mine.sum(BigDecimal(0), &:amount), rows.last&.last || 0
    end
    assert_empty Cluster.values(DEV_DB, "SELECT * FROM raceguard.verify_running_balance('entries')")
    entry = Entry.where(account_id: accounts).first
    assert_raises(ActiveRecord::RecordNotDestroyed) { entry.destroy! }
    assert_raises(ActiveRecord::RecordInvalid) { entry.update!(balance: 1) }
    assert_equal [{ error: :ledger_history }], entry.errors.details[:balance]
  end

  def test_13_other_errors_pass_through_unchanged
    app!
    check = assert_raises(ActiveRecord::StatementInvalid) { Entry.create(account_id: 4, amount: 0) }
    assert_kind_of PG::CheckViolation, check.cause
    assert_equal "entries_amount_nonzero", check.cause.result.error_field(PG::PG_DIAG_CONSTRAINT_NAME)

    # PostgreSQL's own 40001 at REPEATABLE READ is not a guard's.
    conversation = Conversation.create!(topic: "rr")
    read = Queue.new
    written = Queue.new
    results = race(2) do |i|
      if i.zero?
        Conversation.transaction(isolation: :repeatable_read) do
          mine = Conversation.find(conversation.id)
          read << true
          written.pop
          mine.update!(topic: "second")
        end
      else
        read.pop
        Conversation.find(conversation.id).update!(topic: "first")
        written << true
      end
    end
    assert_kind_of ActiveRecord::SerializationFailure, results[0]
    refute_kind_of ActiveRecord::StaleObjectError, results[0]
    assert_equal "first", conversation.reload.topic
  end

  def test_13b_guards_are_read_once_per_connection_and_new_ones_found
    app!
    reads = 0
    counter = ActiveSupport::Notifications.subscribe("sql.active_record") do |*, payload|
      reads += 1 if payload[:name] == "raceguard guards"
    end
    begin
      ActiveRecord::Base.connection_pool.with_connection do
        conversation = Conversation.create!(texter_id: 1)
        3.times { refute conversation.reload.update(texter_id: 2) }
        assert_operator reads, :<=, 2, "the guards are read once per connection, not per error"
        assert_equal [{ error: :write_once }], conversation.errors.details[:texter_id]
      end
    ensure
      ActiveSupport::Notifications.unsubscribe(counter)
    end

    # A guard another connection added after this one read the guards, with
    # sqlstate=23514 on a version: its stale write is a StaleObjectError.
    connection.raceguard_guards
    Cluster.as_app(DEV_DB) do |c|
      c.exec(<<~SQL)
        CREATE TABLE versioned (id bigserial PRIMARY KEY, body text, revision integer NOT NULL DEFAULT 1);
        CREATE TRIGGER versioned_revision_guard BEFORE INSERT OR UPDATE ON versioned
            FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('revision', 'sqlstate=23514');
      SQL
    end
    versioned = Class.new(ApplicationRecord) do
      self.table_name = "versioned"
      def self.name
        "Versioned"
      end
      before_update { revision_will_change! }
    end
    record = versioned.create!(body: "a")
    stale = versioned.find(record.id)
    versioned.find(record.id).update!(body: "b")
    error = assert_raises(ActiveRecord::StaleObjectError) { stale.update(body: "c") }
    assert_kind_of PG::CheckViolation, error.cause.cause
    assert_equal "b", versioned.find(record.id).body
  ensure
    connection.execute("DROP TABLE IF EXISTS versioned")
  end

  def test_14_leases_are_completed_exactly_once
    app!
    Job.delete_all
    count = RANDOM.rand(20..60)
    Job.insert_all(Array.new(count) { { status: "pending" } })
    completions = Queue.new
    releases = Queue.new
    workers = RANDOM.rand(2..5)
    race(workers) do |worker|
      random = Random.new(SEED + worker)
      loop do
        jobs = Job.where(status: "pending").order(:id)
                  .lease(batch: random.rand(1..4), lease: 60, attempts: :attempts, max_attempts: 1000)
        if jobs.empty?
          break if Job.where(status: "pending").none?

          sleep 0.01 # the rest are leased by other workers, which complete or release them
          next
        end
        jobs.each do |job|
          if random.rand(5).zero?
            assert Raceguard::Rails.release(job)
            releases << job.id
          else
            assert Raceguard::Rails.complete(job, status: "done", done_by: "worker #{worker}")
            completions << job.id
          end
        end
      end
    end.each { |result| raise result if result.is_a?(Exception) }
    completed = Array.new(completions.size) { completions.pop }
    assert_equal Job.pluck(:id).sort, completed.sort, "every job completed exactly once"
    assert_equal [[count, 0]], Job.where(status: "done").pluck(Arel.sql("count(*)"), Arel.sql("count(claim_token)"))
    assert_equal count + releases.size, Job.sum(:attempts)
  end

  def test_15_leases_are_fenced_and_independent_of_the_caller
    app!
    Job.delete_all
    job = Job.create!(status: "fenced")
    first = Job.where(id: job.id).lease(lease: 60).first
    Job.where(id: job.id).update_all(claimed_until: 1.second.ago)   # the lease ran out
    second = Job.where(id: job.id).lease(lease: 60).first
    refute_equal first.claim_token, second.claim_token
    refute Raceguard::Rails.complete(first, status: "late")
    refute Raceguard::Rails.release(first)
    refute Raceguard::Rails.extend_lease(first, lease: 60)
    assert Raceguard::Rails.extend_lease(second, lease: 120)
    assert Raceguard::Rails.complete(second, status: "done")
    assert_equal "done", job.reload.status

    # max_attempts: a row released that often is never leased again.
    poison = Job.create!(status: "poison")
    3.times do
      leased = Job.where(id: poison.id).lease(lease: 60, attempts: :attempts, max_attempts: 3)
      assert_equal 1, leased.size
      Raceguard::Rails.release(leased.first)
    end
    assert_empty Job.where(id: poison.id).lease(lease: 60, attempts: :attempts, max_attempts: 3)

    # A lease survives the rollback of the caller's transaction.
    kept = Job.create!(status: "kept")
    Job.transaction do
      assert_equal 1, Job.where(id: kept.id).lease(lease: 60).size
      raise ActiveRecord::Rollback
    end
    refute_nil kept.reload.claim_token

    assert_raises(ArgumentError) { Job.where(status: "x").lease(lease: 60, batch: 0) }
    assert_raises(ArgumentError) { Job.where(status: "x").limit(3).lease(lease: 60) }
    assert_raises(ArgumentError) { Job.where(status: "x").lease(lease: 60, attempts: :nope) }
    assert_raises(ArgumentError) { Raceguard::Rails.complete(Job.new, status: "x") }
    assert_raises(ArgumentError) { Raceguard::Rails.release(kept, retry_after: -1) }
    assert_raises(ArgumentError) { Raceguard::Rails.complete(kept, no_such_column: 1) }
    refute_nil kept.reload.claim_token

    # release gives back this record's lease only, not its batch-mates'.
    Job.where(status: "pair").delete_all
    Job.create!([{ status: "pair" }, { status: "pair" }])
    pair = Job.where(status: "pair").order(:id).lease(batch: 2, lease: 60)
    assert_equal 1, pair.map(&:claim_token).uniq.size
    assert Raceguard::Rails.release(pair[0], retry_after: 30.seconds)
    assert_nil pair[0].claim_token
    assert_operator pair[0].claimed_until, :>, Time.now + 10
    assert_empty Job.where(id: pair[0].id).lease(lease: 60), "claimable only after retry_after"
    assert Raceguard::Rails.complete(pair[1], status: "done")
    negative = assert_raises(ActiveRecord::StatementInvalid) { Job.where(status: "x").lease(lease: -5) }
    assert_kind_of PG::InvalidParameterValue, negative.cause
  end

  def test_16_lease_filters_with_hostile_values
    app!
    Job.delete_all
    hostile = ["it's", "back\\slash", "\\'", "ünïcödé 🚀", "'); DROP TABLE jobs; --", "$1", "%s", "E'\\x41'", "\"quoted\"",
               "line\nbreak", "tab\tand -- comment", "*/ /*"]
    hostile += Array.new(4) { Array.new(RANDOM.rand(1..12)) { RANDOM.rand(32..0x24f).chr(Encoding::UTF_8) }.join }
    hostile.uniq!
    hostile.each { |status| Job.create!([{ status: status }, { status: status }]) }
    hostile.each do |status|
      leased = Job.where(status: status).lease(batch: 10, lease: 60)
      assert_equal [status, status], leased.map(&:status), "leases exactly the rows with status #{status.inspect}"
      assert_empty Job.where("status = ?", status).lease(batch: 10, lease: 60)
    end
    pair = hostile.first(2)
    Job.where(status: pair).update_all(claim_token: nil, claimed_until: nil)
    assert_equal 4, Job.where(status: pair).where.not(status: "x'y").lease(batch: 10, lease: 60).size
    assert_equal hostile.size * 2, Job.count
  end

  # The backends of this test's application role waiting for a lock on
  # table's rows, seen from the superuser's connection.
  def lock_waiters(table)
    Cluster.values(DEV_DB, <<~SQL, [ROLE, "UPDATE \"#{table}\"%"]).first.first.to_i
      SELECT count(*) FROM pg_stat_activity
       WHERE usename = $1 AND wait_event_type = 'Lock' AND query LIKE $2
    SQL
  end

  def wait_for_lock_waiters(table, count)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 60
    until lock_waiters(table) >= count
      flunk "#{count} UPDATE(s) of #{table} never waited for the row lock" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      sleep 0.01
    end
  end

  # Workers load the same open ticket and all save it as assigned. One
  # (chosen by the seed) saves first in a transaction it holds open until
  # every other worker's UPDATE waits for its row lock: then it commits.
  # Each other UPDATE is re-aimed at the assigned row and refused as a
  # duplicate transition: a validation error, not a second owner.
  def test_17_transition_race_has_one_winner_and_validation_errors
    app!
    5.times do |round|
      workers = RANDOM.rand(2..4)
      first = RANDOM.rand(workers)
      bang = RANDOM.rand(2).zero?
      ticket = Ticket.create!(status: "open")
      copies = Array.new(workers) { Ticket.find(ticket.id) }
      saved = Queue.new
      commit = Queue.new
      save = ->(i) { bang ? copies[i].update!(status: "assigned", agent: "agent #{i}") : copies[i].update(status: "assigned", agent: "agent #{i}") }
      threads = Array.new(workers) do |i|
        Thread.new do
          ActiveRecord::Base.connection_pool.with_connection do
            if i == first
              Ticket.transaction do
                result = save.call(i)
                saved << true
                commit.pop
                result
              end
            else
              saved.pop.then { saved << true } # start only once the first one saved
              save.call(i)
            end
          rescue StandardError => e
            e
          end
        end
      end
      wait_for_lock_waiters("tickets", workers - 1)
      commit << true
      results = threads.map(&:value)
      assert_equal [true], results.values_at(first), "round #{round}: the first save wins"
      (results.each_index.to_a - [first]).each do |i|
        if bang
          assert_kind_of ActiveRecord::RecordInvalid, results[i], "round #{round} worker #{i}"
        else
          assert_equal false, results[i], "round #{round} worker #{i}"
        end
        assert_equal [{ error: :duplicate_transition, from: "open", to: "assigned" }], copies[i].errors.details[:status]
        assert_equal ["Status was already changed from 'open' to 'assigned' by another transaction"], copies[i].errors.full_messages
      end
      assert_equal ["assigned", "agent #{first}"], Ticket.where(id: ticket.id).pick(:status, :agent)
    end

    # With ActiveRecord's optimistic locking (invoices): every loser of a
    # free race is a StaleObjectError, whenever its save came.
    5.times do |round|
      workers = RANDOM.rand(2..5)
      invoice = Invoice.create!(status: "pending", billing: "round #{round}")
      _, results, winner = race_on_copies(invoice, workers) { |copy, i| copy.update(status: "sent", billing: "by #{i}") }
      (results.each_index.to_a - [winner]).each { |i| assert_kind_of ActiveRecord::StaleObjectError, results[i] }
      assert_equal ["sent", "by #{winner}", 1], Invoice.where(id: invoice.id).pick(:status, :billing, :lock_version)
    end
  end

  # The hostile chain of test_06: every state reached through ActiveRecord
  # along its edge, every skipped edge refused with exactly its two states
  # in the error's details (read back from the guard's DETAIL).
  def test_18_transition_with_hostile_states
    app!
    states = hostile_states
    hostile = Class.new(ApplicationRecord) do
      self.table_name = "hostile"
      def self.name
        "Hostile"
      end
    end
    row = hostile.create!(status: nil)
    chain = [nil] + states + [nil]
    chain.each_cons(2).with_index do |(from, to), i|
      skip_to = chain[i + 2]
      if i + 2 < chain.size && skip_to != to && !(from.nil? && skip_to.nil?)
        refute row.update(status: skip_to), "#{from.inspect} -> #{skip_to.inspect} is not an edge"
        assert_equal [{ error: :transition, from: from, to: skip_to }], row.errors.details[:status]
        row.reload
      end
      assert row.update(status: to), "#{from.inspect} -> #{to.inspect}: #{row.errors.full_messages}"
      to.nil? ? assert_nil(hostile.find(row.id).status) : assert_equal(to, hostile.find(row.id).status)
    end
    started = hostile.create(status: states.last)
    refute started.persisted?
    assert_equal [{ error: :start_state, to: states.last }], started.errors.details[:status]
    assert_equal 1, hostile.count

    # The text NULL and the NULL state are two states of the odd column.
    odd = hostile.create!(status: nil, "odd \"col\" >=": "NULL")
    assert odd.update("odd \"col\" >=": "null")
    refute odd.update("odd \"col\" >=": nil)
    assert_equal [{ error: :transition, from: "null", to: nil }], odd.errors.details[:"odd \"col\" >="]
    assert_equal ["Odd \"col\" >= cannot change from 'null' to NULL"], odd.errors.full_messages
  end

  # A role that may update the status but not read it: PostgreSQL leaves the
  # DETAIL out; the error is still the validation error its message names,
  # with from and to unknown (nil in the details would read as NULL: absent).
  def test_19_transition_error_without_detail
    app!
    blind = "#{PREFIX}_blind"
    Cluster.admin do |c|
      c.exec("CREATE ROLE #{c.quote_ident(blind)} LOGIN PASSWORD #{c.escape_literal(PASSWORD)}")
    end
    Cluster.admin(DEV_DB) { |c| c.exec("GRANT SELECT (id), UPDATE (status) ON tickets TO #{c.quote_ident(blind)}") }
    ticket = Ticket.create!(status: "open")
    blind_model = Class.new(ActiveRecord::Base) do
      self.table_name = "tickets"
      def self.name
        "BlindTicket"
      end
    end
    config = ActiveRecord::Base.connection_db_config.configuration_hash.merge(username: blind, password: PASSWORD)
    blind_model.establish_connection(config)
    record = blind_model.instantiate("id" => ticket.id, "status" => "open")
    refute record.update(status: "closed")
    assert_equal [{ error: :transition }], record.errors.details[:status]
    assert_equal ["Status cannot change from ? to ?"], record.errors.full_messages
    assert_equal "open", ticket.reload.status
  ensure
    blind_model&.remove_connection
    Cluster.admin(DEV_DB) { |c| c.exec("REVOKE ALL ON tickets FROM #{c.quote_ident(blind)}") } rescue nil
    Cluster.admin { |c| c.exec("DROP ROLE IF EXISTS #{c.quote_ident(blind)}") }
  end
end
