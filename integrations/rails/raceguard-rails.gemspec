# frozen_string_literal: true

require_relative "lib/raceguard/rails/version"

Gem::Specification.new do |spec|
  spec.name = "raceguard-rails"
  spec.version = Raceguard::Rails::VERSION
  spec.summary = "raceguard's database guards in Rails migrations, schema.rb and ActiveRecord errors"
  spec.description = <<~TEXT
    Reversible migration helpers for the raceguard PostgreSQL extension's guards
    (lock_version, immutable_once_set, running_balance), a schema.rb dumper hook
    that keeps them, a structure.sql that loads into databases made from a
    template holding raceguard, ActiveRecord's own errors for guard violations,
    and leases over ActiveRecord relations.
  TEXT
  spec.license = "PostgreSQL"
  spec.authors = ["raceguard contributors"]
  spec.files = Dir["lib/**/*.{rb,yml}"] + ["README.md"]
  spec.require_paths = ["lib"]
  spec.required_ruby_version = ">= 2.7"
  spec.add_dependency "activerecord", ">= 6.1", "< 8.1"
  spec.add_dependency "pg", ">= 1.1"
end
