# frozen_string_literal: true

class Job < ApplicationRecord
end
