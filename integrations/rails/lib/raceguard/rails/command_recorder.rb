# frozen_string_literal: true

module Raceguard
  module Rails
    # Makes the helpers reversible in `change`: each add_* is undone by its
    # remove_* with the same arguments, and the other way round.
    module CommandRecorder
      PAIRS = {
        add_lock_version_guard: :remove_lock_version_guard,
        add_write_once_guard: :remove_write_once_guard,
        add_running_balance_guard: :remove_running_balance_guard,
        add_transition_guard: :remove_transition_guard
      }.freeze

      (PAIRS.keys + PAIRS.values).each do |method|
        define_method(method) { |*args, &block| record(method, args, &block) }
        ruby2_keywords(method)
      end

      PAIRS.each do |add, remove|
        define_method(:"invert_#{add}") { |args| [remove, args] }
        define_method(:"invert_#{remove}") { |args| [add, args] }
      end
    end
  end
end
