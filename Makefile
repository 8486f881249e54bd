# raceguard: PostgreSQL extension in C++, built with PGXS.

EXTENSION = raceguard
MODULE_big = raceguard
DATA = sql/raceguard--1.0.sql sql/raceguard--1.1.sql sql/raceguard--1.2.sql sql/raceguard--1.6.sql sql/raceguard--1.0--1.1.sql sql/raceguard--1.1--1.2.sql sql/raceguard--1.2--1.3.sql sql/raceguard--1.3--1.4.sql sql/raceguard--1.4--1.5.sql sql/raceguard--1.5--1.6.sql

SOURCES = $(wildcard src/*.cpp)
OBJS = $(SOURCES:.cpp=.o)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
INCLUDEDIR_SERVER := $(shell $(PG_CONFIG) --includedir-server)

# Server headers as system headers, so -Wextra speaks of our code only.
PG_CPPFLAGS = -isystem $(INCLUDEDIR_SERVER)
PG_CXXFLAGS = -std=c++17 -Wall -Wextra -Wno-missing-field-initializers -fno-omit-frame-pointer
SHLIB_LINK += -lstdc++

# make SANITIZE=1: built with AddressSanitizer and UndefinedBehaviorSanitizer
# for test/sanitize.sh (the server must preload libasan to load it). No
# bitcode then: JIT-inlined instrumented code would need the sanitizer runtime.
ifeq ($(SANITIZE),1)
SANITIZE_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
PG_CXXFLAGS += $(SANITIZE_FLAGS)
SHLIB_LINK += $(SANITIZE_FLAGS)
override with_llvm = no
endif

# pg_regress: sql/*.sql against expected/*.out
REGRESS = setup boundary lock_version lock_version_errors immutable_once_set running_balance running_balance_errors claim claim_names claim_expiry claim_plans claim_attempts claim_tokens guards transition transition_review running_balance_shapes running_balance_memory running_balance_restore running_balance_groups running_balance_routing generated_virtual stats transition_stats orms comments privileges cluster missing_library
REGRESS_OPTS = --inputdir=. --load-extension=raceguard

# isolationtester: test/isolation/specs/*.spec against test/isolation/expected/*.out
ISOLATION = helpers lock_version_echo lock_version_prebump lock_version_blind lock_version_orm lock_version_waited_detail immutable_once_set_claim immutable_once_set_release immutable_once_set_deferred running_balance_same_group running_balance_other_groups running_balance_repeatable_read running_balance_memo_update running_balance_min_balance running_balance_idempotent claim_disjoint claim_nowait claim_lease_fencing claim_lease_poison running_balance_deadlock running_balance_routing stats_backends privileges_no_lock transition_duplicate transition_undeclared transition_self_edge transition_other_columns transition_lock_version transition_partitioned transition_stats transition_upsert transition_merge running_balance_between_statements
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=raceguard

EXTRA_CLEAN = results/ regression.diffs regression.out output_iso/ src/*.bc .build-mode

include $(PGXS)

# The LLVM bitcode rule ignores PG_CXXFLAGS.
COMPILE.cxx.bc += $(PG_CXXFLAGS)

$(OBJS): $(wildcard src/*.hpp)

# The objects remember whether they were sanitized: switching modes rebuilds them.
BUILD_MODE = $(if $(filter 1,$(SANITIZE)),sanitize,plain)
.build-mode: FORCE
	@[ "$$(cat $@ 2>/dev/null)" = $(BUILD_MODE) ] || echo $(BUILD_MODE) >$@
.PHONY: FORCE
$(OBJS): .build-mode

# make dist: the PGXN distribution, raceguard-VERSION.zip, of the committed
# tree (VERSION is META.json's, whose first "version" is the distribution's).
DIST_VERSION = $(shell grep -m 1 '"version"' $(srcdir)/META.json | sed 's/.*: *"\([^"]*\)".*/\1/')
dist:
	git -C $(srcdir) archive --format zip --prefix=$(EXTENSION)-$(DIST_VERSION)/ -o $(CURDIR)/$(EXTENSION)-$(DIST_VERSION).zip HEAD
.PHONY: dist
