# frozen_string_literal: true

# A minimal Rails application (what `rails new --minimal` would make, by
# hand): ActiveRecord only, configured from the environment by the test.
require "logger"
require "rails"
require "active_record/railtie"
require "raceguard/rails"

module RaceguardShop
  class Application < Rails::Application
    config.root = File.expand_path("..", __dir__)
    config.eager_load = false
    config.secret_key_base = "raceguard-rails-test"
    config.logger = Logger.new(ENV["RACEGUARD_RAILS_LOG"] || File::NULL)
    config.active_record.schema_format = ENV.fetch("RACEGUARD_SCHEMA_FORMAT", "ruby").to_sym
  end
end
