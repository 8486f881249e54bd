# frozen_string_literal: true

module Raceguard
  module Rails
    class Railtie < ::Rails::Railtie
      initializer "raceguard.active_record" do
        ActiveSupport.on_load(:active_record) { Raceguard::Rails.install! }
      end

      rake_tasks do
        Raceguard::Rails.install_tasks!

        namespace :raceguard do
          desc "Lists the problems raceguard.check_guards() finds in the database's guards; fails if there are any"
          task check: :environment do
            problems = ActiveRecord::Base.connection.select_rows(
              "SELECT table_name::text, trigger_name, problem FROM raceguard.check_guards()"
            )
            problems.each { |table, trigger, problem| puts "#{table} #{trigger}: #{problem}" }
            abort "raceguard: #{problems.size} problem(s)" if problems.any?
            puts "raceguard: no problems"
          end
        end
      end
    end
  end
end
