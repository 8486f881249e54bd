#include "trigger_cache.hpp"

#include <string>

namespace raceguard {

namespace {

HTAB* trigger_states = nullptr;
MemoryContext cache_context = nullptr;

// Bumped by every invalidation; a build that saw it change may be stale.
uint64 invalidation_count = 0;

// Relcache callback: may run at any catalog access, including in the middle
// of a build, so it only marks entries stale and never frees anything.
// Every entry, whatever relation changed: a state can depend on more than
// its own table (a running_balance clone on one partition knows every
// partition of the ledger, and an ATTACH or DETACH PARTITION invalidates only
// the parent). Relcache invalidations are rare, rebuilding is cheap.
void invalidate_trigger_states(Datum, Oid) {
    ++invalidation_count;
    HASH_SEQ_STATUS scan;
    hash_seq_init(&scan, trigger_states);
    while (auto* entry = static_cast<TriggerCacheEntry*>(hash_seq_search(&scan)))
        entry->valid = false;
}

void create_cache() {
    cache_context = AllocSetContextCreate(TopMemoryContext, "raceguard trigger states",
                                          ALLOCSET_DEFAULT_SIZES);
    HASHCTL control{};
    control.keysize = sizeof(Oid);
    control.entrysize = sizeof(TriggerCacheEntry);
    control.hcxt = cache_context;
    trigger_states = hash_create("raceguard trigger states", 64, &control,
                                 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
    CacheRegisterRelcacheCallback(invalidate_trigger_states, 0);
}

}  // namespace

void* trigger_state_slow(FunctionCallInfo fcinfo, const TriggerData* trigger_data, StateBuilder builder) {
    const Oid trigger_oid = trigger_data->tg_trigger->tgoid;
    auto* entry = pg_call([&] {
        if (trigger_states == nullptr)
            create_cache();
        bool found = false;
        auto* found_entry = static_cast<TriggerCacheEntry*>(
            hash_search(trigger_states, &trigger_oid, HASH_ENTER, &found));
        if (!found) {
            found_entry->valid = false;
            found_entry->state_context = nullptr;
            found_entry->state = nullptr;
        }
        return found_entry;
    });
    if (!entry->valid || entry->builder != builder) {
        entry->valid = false;
        entry->builder = builder;
        entry->state = nullptr;
        pg_call([&] {
            if (entry->state_context == nullptr)
                entry->state_context = AllocSetContextCreate(cache_context, "raceguard trigger state",
                                                              ALLOCSET_SMALL_SIZES);
            else
                MemoryContextReset(entry->state_context);
        });
        const uint64 seen = invalidation_count;
        entry->state = builder(trigger_data, entry->state_context);
        // Use the state for this row either way; keep it only if nothing
        // changed while it was built.
        entry->valid = (seen == invalidation_count);
    }
    fcinfo->flinfo->fn_extra = entry;
    return entry->state;
}

const TriggerData* require_trigger_call(FunctionCallInfo fcinfo, const char* guard) {
    if (!CALLED_AS_TRIGGER(fcinfo))
        throw Error(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                    std::string(guard) + " can only be called as a trigger")
            .with_hint("Attach it with CREATE TRIGGER ... FOR EACH ROW EXECUTE FUNCTION.");
    return reinterpret_cast<const TriggerData*>(fcinfo->context);
}

}  // namespace raceguard
