// The one place raceguard includes PostgreSQL's headers.
//
// postgres.h must come first, and every header must be seen with C linkage;
// including them from here keeps both rules in one spot.
#pragma once

extern "C" {
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
}

// TriggerData.tg_updatedcols (lock_version's strict=true and the "row changed
// while the statement waited" rule) and pg_trigger.tgparentid arrived in 13.
#if PG_VERSION_NUM < 130000
#error "raceguard needs PostgreSQL 13 or later"
#endif
