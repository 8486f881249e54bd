#include "trigger_cache.hpp"

#include "trigger_plumbing.hpp"

#include <string>

namespace raceguard {

namespace {

HTAB* trigger_states = nullptr;
MemoryContext cache_context = nullptr;

// Bumped by every invalidation; a build that saw it change may be stale.
uint64 invalidation_count = 0;
// invalidation_count when the cache was last swept.
uint64 swept_at = 0;

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

// At transaction end no trigger is running, so the states that went stale
// since the last sweep (a dropped trigger's among them) are freed and their
// entries removed: the cache holds only the guards used since the last
// invalidation. A stale fn_extra still pointing at a removed entry is safe:
// dynahash keeps removed entries on its free list (never returns their
// memory), the entry was marked invalid before removal, and a reused entry
// carries another trigger's OID or the same trigger's fresh state; either way
// the hot path's check sends that call to the slow path.
void sweep_stale_states(XactEvent event, void*) {
    if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_COMMIT &&
        event != XACT_EVENT_PARALLEL_ABORT && event != XACT_EVENT_PREPARE)
        return;
    if (swept_at == invalidation_count)
        return;
    swept_at = invalidation_count;
    HASH_SEQ_STATUS scan;
    hash_seq_init(&scan, trigger_states);
    while (auto* entry = static_cast<TriggerCacheEntry*>(hash_seq_search(&scan))) {
        if (entry->valid)
            continue;
        if (entry->state_context != nullptr)
            MemoryContextDelete(entry->state_context);
        entry->state_context = nullptr;
        entry->state = nullptr;
        entry->builder = nullptr;
        // Removing the element just returned is allowed during a scan.
        hash_search(trigger_states, &entry->trigger_oid, HASH_REMOVE, nullptr);
    }
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
    RegisterXactCallback(sweep_stale_states, nullptr);
}

// The trigger's entry, valid for `builder`: built now unless it already is.
TriggerCacheEntry* entry_for(Oid trigger_oid, const TriggerData* trigger_data, StateBuilder builder) {
    auto* entry = pg_call([&] {
        if (trigger_states == nullptr)
            create_cache();
        bool found = false;
        auto* found_entry = static_cast<TriggerCacheEntry*>(
            hash_search(trigger_states, &trigger_oid, HASH_ENTER, &found));
        if (!found) {
            found_entry->valid = false;
            found_entry->builder = nullptr;
            found_entry->state_context = nullptr;
            found_entry->state = nullptr;
            found_entry->counters = nullptr;
            found_entry->counters_generation = 0;
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
    return entry;
}

}  // namespace

uint64 trigger_state_invalidations() { return invalidation_count; }

void* trigger_state_slow(FunctionCallInfo fcinfo, const TriggerData* trigger_data, StateBuilder builder) {
    TriggerCacheEntry* entry = entry_for(trigger_data->tg_trigger->tgoid, trigger_data, builder);
    fcinfo->flinfo->fn_extra = entry;
    return entry->state;
}

const void* other_trigger_state(Oid trigger_oid, StateBuilder builder) {
    const OpenTrigger open = open_trigger(trigger_oid);
    if (open.trigger == nullptr) {
        close_trigger(open);
        throw Error(ERRCODE_UNDEFINED_OBJECT, "trigger " + std::to_string(trigger_oid) + " does not exist");
    }
    // The same TriggerData the trigger manager would pass, minus the row.
    TriggerData data{};
    data.type = T_TriggerData;
    data.tg_event = TRIGGER_EVENT_ROW;
    data.tg_relation = open.relation;
    data.tg_trigger = const_cast<Trigger*>(open.trigger);
    const TriggerCacheEntry* entry = nullptr;
    try {
        entry = entry_for(trigger_oid, &data, builder);
    } catch (...) {
        close_trigger(open);
        throw;
    }
    close_trigger(open);
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
