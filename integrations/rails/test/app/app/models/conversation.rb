# frozen_string_literal: true

class Conversation < ApplicationRecord
end
