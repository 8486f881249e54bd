# frozen_string_literal: true

require "raceguard/rails"
