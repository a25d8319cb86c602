/* The database schema (ordered migrations recorded in schema_version, run
 * under an advisory lock so replicas starting together do not race) and
 * every SQL statement of the service, prepared once per connection. */
#include "message.h"

#include "chat/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* Any constant unique to this service: pg_advisory_lock(bigint). */
#define MSG_SCHEMA_LOCK 7201001

/* Append only: a released migration is never edited, only followed. */
static const char *const migrations[] = {
    /* 1: the initial schema */
    "CREATE TABLE conversations ("
    "  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
    "  kind smallint NOT NULL,"
    "  room text UNIQUE,"
    "  dm_key text UNIQUE,"
    "  last_seq bigint NOT NULL DEFAULT 0,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  closed_at timestamptz);"
    "CREATE TABLE members ("
    "  conversation_id uuid REFERENCES conversations ON DELETE CASCADE,"
    "  user_id uuid NOT NULL,"
    "  joined_at timestamptz DEFAULT now(),"
    "  delivered_seq bigint NOT NULL DEFAULT 0,"
    "  read_seq bigint NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (conversation_id, user_id));"
    "CREATE INDEX members_user_id ON members (user_id);"
    "CREATE TABLE messages ("
    "  conversation_id uuid NOT NULL,"
    "  seq bigint NOT NULL,"
    "  id bigint GENERATED ALWAYS AS IDENTITY,"
    "  sender uuid NOT NULL,"
    "  client_msg_id text NOT NULL,"
    "  body text NOT NULL,"
    "  ts bigint NOT NULL,"
    "  PRIMARY KEY (conversation_id, seq),"
    "  UNIQUE (sender, client_msg_id));",
    /* 2: known users (open_dm finds only these); everyone who is already a
     * member somewhere is known. */
    "CREATE TABLE users ("
    "  id uuid PRIMARY KEY,"
    "  created_at timestamptz NOT NULL DEFAULT now());"
    "INSERT INTO users (id) SELECT DISTINCT user_id FROM members ON CONFLICT DO NOTHING;",
    /* 3: settings every replica shares (retention_days; no row: never
     * set), and the purger's way to the oldest messages. */
    "CREATE TABLE IF NOT EXISTS msg_settings ("
    "  key text PRIMARY KEY,"
    "  value text NOT NULL,"
    "  updated_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts);",
};

/* The oldest ts a reader may return: messages past the retention are never
 * handed out, also before the purger (which lags) deleted them. Evaluated
 * once per statement (an InitPlan). Kept in step with
 * msg_retention_cutoff(). */
#define KEPT_FROM                                                                        \
    "(SELECT coalesce((SELECT CASE WHEN value::bigint > 0"                               \
    " THEN (extract(epoch FROM now()) * 1000)::bigint - value::bigint * 86400000 ELSE 0" \
    " END FROM msg_settings WHERE key = 'retention_days'), 0))"

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

static atomic_bool schema_done;

static bool exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        chat_error("schema_sql_failed", "err=\"%s\"",
                   PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                       ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                       : "no result");
    PQclear(r);
    return ok;
}

static int current_version(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_version");
    int v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        v = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static int apply(PGconn *c, int version, const char *sql)
{
    char rec[96];
    snprintf(rec, sizeof rec, "INSERT INTO schema_version (version) VALUES (%d)", version);
    if (!exec_ok(c, "BEGIN"))
        return -1;
    if (!exec_ok(c, sql) || !exec_ok(c, rec) || !exec_ok(c, "COMMIT")) {
        exec_ok(c, "ROLLBACK");
        return -1;
    }
    chat_info("schema_migrated", "version=%d", version);
    return 0;
}

static int migrate_locked(PGconn *c)
{
    if (!exec_ok(c, "CREATE TABLE IF NOT EXISTS schema_version (version int PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"))
        return -1;
    int v = current_version(c);
    if (v < 0)
        return -1;
    if (v > N_MIGRATIONS)
        chat_warn("schema_newer", "db_version=%d known=%d", v, N_MIGRATIONS);
    for (int i = v; i < N_MIGRATIONS; i++)
        if (apply(c, i + 1, migrations[i]) != 0)
            return -1;
    return 0;
}

int msg_schema_migrate(PGconn *c)
{
    if (atomic_load(&schema_done))
        return 0;
    char lock[80], unlock[80];
    snprintf(lock, sizeof lock, "SELECT pg_advisory_lock(%d)", MSG_SCHEMA_LOCK);
    snprintf(unlock, sizeof unlock, "SELECT pg_advisory_unlock(%d)", MSG_SCHEMA_LOCK);
    if (!exec_ok(c, lock))
        return -1;
    int rv = migrate_locked(c);
    exec_ok(c, unlock);
    if (rv == 0)
        atomic_store(&schema_done, true);
    return rv;
}

/* One send: a single statement, so a bad send never aborts its batch.
 * $1 conversation, $2 sender, $3 client_msg_id, $4 text, $5 ts.
 * status: 0 stored, 1 duplicate, 2 unknown conversation, 3 not a member,
 * 4 closed (also when closed between our read and the row lock: the UPDATE
 * re-checks closed_at on the latest row version). The duplicate check
 * comes first: a retry gets its original ack whatever happened since.
 * The last column: every member (the sender too: its other connections'
 * sequencers follow the seqs), for a stored send and for a duplicate,
 * whose event is published again (the first may have died with a replica
 * between commit and publish; the gateways drop what they already have). */
static const char sql_send[] =
    "WITH d AS ("
    "  SELECT conversation_id, seq, id, body, ts FROM messages"
    "  WHERE sender = $2::uuid AND client_msg_id = $3::text),"
    " c AS (SELECT closed_at IS NOT NULL AS closed FROM conversations WHERE id = $1::uuid),"
    " chk AS (SELECT CASE"
    "  WHEN EXISTS (SELECT 1 FROM d) THEN 1"
    "  WHEN NOT EXISTS (SELECT 1 FROM c) THEN 2"
    "  WHEN NOT EXISTS (SELECT 1 FROM members"
    "                   WHERE conversation_id = $1::uuid AND user_id = $2::uuid) THEN 3"
    "  WHEN (SELECT closed FROM c) THEN 4"
    "  ELSE 0 END AS st),"
    " u AS (UPDATE conversations SET last_seq = last_seq + 1"
    "  WHERE id = $1::uuid AND closed_at IS NULL AND (SELECT st FROM chk) = 0"
    "  RETURNING last_seq),"
    " i AS (INSERT INTO messages (conversation_id, seq, sender, client_msg_id, body, ts)"
    "  SELECT $1::uuid, u.last_seq, $2::uuid, $3::text, $4::text, $5::bigint FROM u"
    "  RETURNING id, seq, ts)"
    " SELECT CASE WHEN chk.st <> 0 THEN chk.st WHEN i.id IS NULL THEN 4 ELSE 0 END,"
    "  coalesce(d.conversation_id, $1::uuid)::text, $2::uuid::text,"
    "  coalesce(i.id, d.id)::text, coalesce(i.seq, d.seq), coalesce(i.ts, d.ts), d.body,"
    "  CASE WHEN i.id IS NOT NULL OR d.id IS NOT NULL THEN array_to_string(ARRAY("
    "    SELECT user_id::text FROM members"
    "    WHERE conversation_id = coalesce(d.conversation_id, $1::uuid) ORDER BY user_id), ',')"
    "  END"
    " FROM chk LEFT JOIN i ON true LEFT JOIN d ON true";

/* Many sends in one statement (the group commit's common case): $1
 * conversation uuid[], $2 sender uuid[], $3 client_msg_id text[], $4 body
 * text[] (one element per send, in the batch's order, no two with the same
 * sender and client_msg_id), $5 ts. Per send the checks of sql_send, in its
 * order; each conversation's counter moves once by the number of its
 * accepted sends, which take its next seqs in batch order. One row per
 * send, in batch order, with sql_send's columns. The executor is set up
 * once per batch instead of once per message (most of a single send's
 * cost). */
static const char sql_send_many[] =
    "WITH inp AS ("
    "  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[])"
    "   WITH ORDINALITY AS t(conv, sender, cmid, body, ord)),"
    " chk AS (SELECT inp.*, d.conversation_id AS d_conv, d.seq AS d_seq, d.id AS d_id,"
    "   d.body AS d_body, d.ts AS d_ts, CASE"
    "    WHEN d.id IS NOT NULL THEN 1"
    "    WHEN c.id IS NULL THEN 2"
    "    WHEN m.user_id IS NULL THEN 3"
    "    WHEN c.closed_at IS NOT NULL THEN 4"
    "    ELSE 0 END AS st"
    "  FROM inp"
    "  LEFT JOIN messages d ON d.sender = inp.sender AND d.client_msg_id = inp.cmid"
    "  LEFT JOIN conversations c ON c.id = inp.conv"
    "  LEFT JOIN members m ON m.conversation_id = inp.conv AND m.user_id = inp.sender),"
    " ok AS (SELECT conv, sender, cmid, body, ord,"
    "   row_number() OVER (PARTITION BY conv ORDER BY ord) AS k FROM chk WHERE st = 0),"
    " cnt AS (SELECT conv, count(*) AS n FROM ok GROUP BY conv),"
    " u AS (UPDATE conversations c SET last_seq = c.last_seq + cnt.n FROM cnt"
    "  WHERE c.id = cnt.conv AND c.closed_at IS NULL RETURNING c.id, c.last_seq, cnt.n),"
    " i AS (INSERT INTO messages (conversation_id, seq, sender, client_msg_id, body, ts)"
    "  SELECT ok.conv, u.last_seq - u.n + ok.k, ok.sender, ok.cmid, ok.body, $5::bigint"
    "  FROM ok JOIN u ON u.id = ok.conv"
    "  RETURNING id, seq, ts, sender, client_msg_id)"
    " SELECT CASE WHEN chk.st <> 0 THEN chk.st WHEN i.id IS NULL THEN 4 ELSE 0 END,"
    "  coalesce(chk.d_conv, chk.conv)::text, chk.sender::text,"
    "  coalesce(i.id, chk.d_id)::text, coalesce(i.seq, chk.d_seq), coalesce(i.ts, chk.d_ts),"
    "  chk.d_body,"
    "  CASE WHEN i.id IS NOT NULL OR chk.d_id IS NOT NULL THEN array_to_string(ARRAY("
    "    SELECT mm.user_id::text FROM members mm"
    "    WHERE mm.conversation_id = coalesce(chk.d_conv, chk.conv)"
    "    ORDER BY mm.user_id), ',') END"
    " FROM chk LEFT JOIN i ON i.sender = chk.sender AND i.client_msg_id = chk.cmid"
    " ORDER BY chk.ord";

/* $1 conversation uuid[]: locks their rows in id order (a batch's first
 * statement, so batches of different replicas never deadlock). */
static const char sql_lock[] =
    "SELECT count(*) FROM (SELECT 1 FROM conversations WHERE id = ANY ($1::uuid[])"
    " ORDER BY id FOR UPDATE) l";

/* The original of a send refused for rate: $1 sender, $2 client_msg_id. */
static const char sql_lookup[] =
    "SELECT 1, d.conversation_id::text, d.sender::text, d.id::text, d.seq, d.ts, d.body,"
    "  array_to_string(ARRAY(SELECT user_id::text FROM members"
    "   WHERE conversation_id = d.conversation_id ORDER BY user_id), ',')"
    " FROM messages d WHERE d.sender = $1::uuid AND d.client_msg_id = $2::text";

/* $1 kind, $2 member uuid[] literal, $3 dm_key or NULL. A DM pair always
 * gets the same conversation: the no-op update makes the existing row come
 * back (and locks it) instead of a conflict. */
static const char sql_create[] =
    "WITH conv AS ("
    "  INSERT INTO conversations (kind, dm_key) VALUES ($1::smallint, $3::text)"
    "  ON CONFLICT (dm_key) DO UPDATE SET dm_key = EXCLUDED.dm_key"
    "  RETURNING id),"
    " mem AS (INSERT INTO members (conversation_id, user_id)"
    "  SELECT conv.id, u FROM conv, unnest($2::uuid[]) AS u"
    "  ON CONFLICT DO NOTHING)"
    " SELECT id::text FROM conv";

static const char sql_close[] =
    "UPDATE conversations SET closed_at = coalesce(closed_at, now())"
    " WHERE id = $1::uuid RETURNING 1";

static const char sql_info[] =
    "SELECT kind, closed_at IS NOT NULL, EXISTS (SELECT 1 FROM members"
    "  WHERE conversation_id = c.id AND user_id = $2::uuid)"
    " FROM conversations c WHERE id = $1::uuid";

/* $1 user, ($2 conversation, $3 seq) cursor, $4 limit. */
static const char sql_replay[] =
    "SELECT m.conversation_id::text, m.id::text, m.seq, m.sender::text, m.body, m.ts"
    " FROM members mb JOIN messages m"
    "  ON m.conversation_id = mb.conversation_id AND m.seq > mb.delivered_seq"
    " WHERE mb.user_id = $1::uuid AND m.sender <> $1::uuid"
    "  AND m.ts >= " KEPT_FROM "  AND mb.conversation_id >= $2::uuid"
    "  AND (m.conversation_id, m.seq) > ($2::uuid, $3::bigint)"
    " ORDER BY m.conversation_id, m.seq LIMIT $4::int";

/* $1 user, $2 conversation, $3 seq, $4 read. status: 0 stored, 2 unknown,
 * 3 not a member, 5 seq beyond the last message. */
static const char sql_receipt[] =
    "WITH c AS (SELECT kind, last_seq FROM conversations WHERE id = $2::uuid),"
    " chk AS (SELECT CASE"
    "  WHEN NOT EXISTS (SELECT 1 FROM c) THEN 2"
    "  WHEN NOT EXISTS (SELECT 1 FROM members"
    "                   WHERE conversation_id = $2::uuid AND user_id = $1::uuid) THEN 3"
    "  WHEN $3::bigint > (SELECT last_seq FROM c) THEN 5"
    "  ELSE 0 END AS st),"
    " u AS (UPDATE members SET delivered_seq = greatest(delivered_seq, $3::bigint),"
    "  read_seq = CASE WHEN $4::bool THEN greatest(read_seq, $3::bigint) ELSE read_seq END"
    "  WHERE conversation_id = $2::uuid AND user_id = $1::uuid AND (SELECT st FROM chk) = 0"
    "  RETURNING 1)"
    " SELECT chk.st, (SELECT kind FROM c), array_to_string(ARRAY("
    "  SELECT user_id::text FROM members"
    "  WHERE conversation_id = $2::uuid AND user_id <> $1::uuid ORDER BY user_id), ',')"
    " FROM chk";

/* Kinds as stored (common.proto ConversationKind): 1 random, 2 dm, 3 room. */

/* $1 user. Idempotent. */
static const char sql_register[] =
    "INSERT INTO users (id) VALUES ($1::uuid) ON CONFLICT DO NOTHING RETURNING 1";

/* $1 user, $2 peer, $3 dm_key. The requester becomes known too (it may have
 * connected before its registration took). No row for an unknown peer: the
 * conversation id comes back NULL. Second column: the requester's delivered
 * receipt (0 for a new DM; the statement does not see its own inserts). */
static const char sql_open_dm[] =
    "WITH me AS (INSERT INTO users (id) VALUES ($1::uuid) ON CONFLICT DO NOTHING),"
    " peer AS (SELECT id FROM users WHERE id = $2::uuid),"
    " conv AS (INSERT INTO conversations (kind, dm_key) SELECT 2, $3::text FROM peer"
    "  ON CONFLICT (dm_key) DO UPDATE SET dm_key = EXCLUDED.dm_key"
    "  RETURNING id, last_seq),"
    " mem AS (INSERT INTO members (conversation_id, user_id)"
    "  SELECT conv.id, u FROM conv, unnest(ARRAY[$1::uuid, $2::uuid]) AS u"
    "  ON CONFLICT DO NOTHING)"
    " SELECT (SELECT id::text FROM conv), coalesce((SELECT m.delivered_seq FROM members m, conv"
    "  WHERE m.conversation_id = conv.id AND m.user_id = $1::uuid), 0)";

/* $1 user, $2 room. Creates the room if missing. The upsert locks the
 * room's row, so last_seq is read after any send in flight commits: a new
 * member starts exactly at the last stored message (delivered and read),
 * and replay never hands out older ones. Joining again changes nothing.
 * Second column: the member's delivered receipt (a new member's row is not
 * visible to the statement that inserts it: then the room's last seq, which
 * is what it was given). */
static const char sql_join[] =
    "WITH me AS (INSERT INTO users (id) VALUES ($1::uuid) ON CONFLICT DO NOTHING),"
    /* Already in it, or in fewer than $3 rooms: otherwise no row, and no
     * room is made (a user at the cap cannot fill the table with rooms). */
    " allowed AS (SELECT EXISTS (SELECT 1 FROM members m JOIN conversations c"
    "   ON c.id = m.conversation_id WHERE c.room = $2::text AND m.user_id = $1::uuid)"
    "  OR (SELECT count(*) FROM members m JOIN conversations c ON c.id = m.conversation_id"
    "   WHERE m.user_id = $1::uuid AND c.kind = 3) < $3::int AS ok),"
    " conv AS (INSERT INTO conversations (kind, room) SELECT 3, $2::text FROM allowed WHERE ok"
    "  ON CONFLICT (room) DO UPDATE SET room = EXCLUDED.room"
    "  RETURNING id, last_seq),"
    " mem AS (INSERT INTO members (conversation_id, user_id, delivered_seq, read_seq)"
    "  SELECT id, $1::uuid, last_seq, last_seq FROM conv ON CONFLICT DO NOTHING)"
    " SELECT id::text, coalesce((SELECT m.delivered_seq FROM members m"
    "  WHERE m.conversation_id = conv.id AND m.user_id = $1::uuid), last_seq) FROM conv";

/* $1 user, $2 room. Always one row: the room id (NULL: no such room) and
 * whether a membership was removed. */
static const char sql_leave[] =
    "WITH c AS (SELECT id FROM conversations WHERE room = $2::text),"
    " d AS (DELETE FROM members m USING c"
    "  WHERE m.conversation_id = c.id AND m.user_id = $1::uuid RETURNING 1)"
    " SELECT (SELECT id::text FROM c), (SELECT count(*) FROM d)";

/* $1 user, $2 conversation, $3 before (exclusive), $4 rows to fetch (the
 * page + 1, to learn whether older ones exist). status: 0 ok, 2 unknown
 * conversation, 3 not a member (ended random chats stay readable). Rows
 * newest first; with status 0 and no messages, one row of NULLs. */
static const char sql_history[] =
    "WITH st AS (SELECT CASE"
    "  WHEN NOT EXISTS (SELECT 1 FROM conversations WHERE id = $2::uuid) THEN 2"
    "  WHEN NOT EXISTS (SELECT 1 FROM members"
    "                   WHERE conversation_id = $2::uuid AND user_id = $1::uuid) THEN 3"
    "  ELSE 0 END AS st),"
    " page AS (SELECT m.id, m.seq, m.sender, m.body, m.ts FROM messages m, st"
    "  WHERE st.st = 0 AND m.conversation_id = $2::uuid AND m.seq < $3::bigint"
    "  AND m.ts >= " KEPT_FROM "  ORDER BY m.seq DESC LIMIT $4::int)"
    " SELECT st.st, page.id::text, page.seq, page.sender::text, page.body, page.ts"
    " FROM st LEFT JOIN page ON true ORDER BY page.seq DESC";

/* $1 user, $2 conversation, $3 after (exclusive), $4 from the user's
 * delivered receipt instead, $5 rows to fetch (the page + 1). status as
 * sql_history; rows ascending; with status 0 and no messages, one row of
 * NULLs. */
static const char sql_fill[] =
    "WITH mb AS (SELECT delivered_seq FROM members"
    "  WHERE conversation_id = $2::uuid AND user_id = $1::uuid),"
    " st AS (SELECT CASE"
    "  WHEN NOT EXISTS (SELECT 1 FROM conversations WHERE id = $2::uuid) THEN 2"
    "  WHEN NOT EXISTS (SELECT 1 FROM mb) THEN 3"
    "  ELSE 0 END AS st),"
    " page AS (SELECT m.id, m.seq, m.sender, m.body, m.ts FROM messages m, st"
    "  WHERE st.st = 0 AND m.conversation_id = $2::uuid AND m.seq > CASE WHEN $4::bool"
    "   THEN (SELECT delivered_seq FROM mb) ELSE $3::bigint END"
    "  AND m.ts >= " KEPT_FROM "  ORDER BY m.seq LIMIT $5::int)"
    " SELECT st.st, page.id::text, page.seq, page.sender::text, page.body, page.ts"
    " FROM st LEFT JOIN page ON true ORDER BY page.seq";

/* $1 user, $2 since (unix ms), $3 conversations to skip (uuid[] literal),
 * ($4 conversation, $5 seq) cursor, $6 limit. FillReq's catch-up. */
static const char sql_catchup[] =
    "SELECT m.conversation_id::text, m.id::text, m.seq, m.sender::text, m.body, m.ts"
    " FROM members mb JOIN messages m"
    "  ON m.conversation_id = mb.conversation_id AND m.seq > mb.delivered_seq"
    " WHERE mb.user_id = $1::uuid AND m.sender <> $1::uuid AND m.ts >= $2::bigint"
    "  AND m.ts >= " KEPT_FROM "  AND NOT (mb.conversation_id = ANY ($3::uuid[]))"
    "  AND mb.conversation_id >= $4::uuid"
    "  AND (m.conversation_id, m.seq) > ($4::uuid, $5::bigint)"
    " ORDER BY m.conversation_id, m.seq LIMIT $6::int";

/* $1 user, $2 cap. Where each of the user's conversations stands: a
 * resume's first replay page says so (read before the page). */
static const char sql_floors[] = "SELECT mb.conversation_id::text, c.last_seq FROM members mb"
                                 " JOIN conversations c ON c.id = mb.conversation_id"
                                 " WHERE mb.user_id = $1::uuid LIMIT $2::int";

/* $1 user, $2 conversation. status: 0 ok, 2 unknown, 3 not a member,
 * 4 closed; then the other members, comma-separated. */
static const char sql_typing[] =
    "WITH c AS (SELECT closed_at IS NOT NULL AS closed FROM conversations WHERE id = $2::uuid)"
    " SELECT CASE"
    "  WHEN NOT EXISTS (SELECT 1 FROM c) THEN 2"
    "  WHEN NOT EXISTS (SELECT 1 FROM members"
    "                   WHERE conversation_id = $2::uuid AND user_id = $1::uuid) THEN 3"
    "  WHEN (SELECT closed FROM c) THEN 4 ELSE 0 END,"
    " array_to_string(ARRAY(SELECT user_id::text FROM members"
    "  WHERE conversation_id = $2::uuid AND user_id <> $1::uuid ORDER BY user_id), ',')";

/* $1 user, $2 cap, $3 joined before (unix ms, 0: any time). The other
 * members of the user's DMs and open random chats: who sees this user's
 * presence. A DM opened after the user came online is left out: its other
 * member was no contact when that happened. */
static const char sql_contacts[] =
    "SELECT DISTINCT o.user_id::text FROM members me"
    " JOIN conversations c ON c.id = me.conversation_id"
    " JOIN members o ON o.conversation_id = me.conversation_id AND o.user_id <> me.user_id"
    " WHERE me.user_id = $1::uuid AND (c.kind = 2 OR (c.kind = 1 AND c.closed_at IS NULL))"
    "  AND ($3::bigint = 0 OR me.joined_at <= to_timestamp($3::bigint / 1000.0))"
    " LIMIT $2::int";

/* ---- retention (retention.c, admin.c) ---- */

/* $1 days: CHAT_RETENTION_DAYS seeds the shared setting only when it was
 * never set (an operator's `retention set` wins over every replica's
 * environment, also after restarts). */
static const char sql_ret_seed[] = "INSERT INTO msg_settings (key, value)"
                                   " VALUES ('retention_days', $1::bigint::text)"
                                   " ON CONFLICT DO NOTHING";
static const char sql_ret_get[] =
    "SELECT coalesce((SELECT value::bigint FROM msg_settings WHERE key = 'retention_days'), 0)";
static const char sql_ret_set[] =
    "INSERT INTO msg_settings (key, value) VALUES ('retention_days', $1::bigint::text)"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
    " RETURNING value::bigint";

/* $1 cutoff (unix ms), $2 rows: one bounded batch, its own transaction.
 * The ts index finds the rows, their tids delete them without a second
 * index walk. Nothing references a message row (receipts are seq cursors
 * in members, and seqs are never reused), so deleting breaks no link. */
static const char sql_purge[] =
    "DELETE FROM messages WHERE ctid = ANY (ARRAY("
    " SELECT ctid FROM messages WHERE ts < $1::bigint LIMIT $2::int))";

/* One purger at a time over every replica (session lock, released after
 * the run or with the connection). */
#define MSG_PURGE_LOCK "7201002"
static const char sql_purge_lock[] = "SELECT pg_try_advisory_lock(" MSG_PURGE_LOCK ")";
static const char sql_purge_unlock[] = "SELECT pg_advisory_unlock(" MSG_PURGE_LOCK ")";

/* ---- admin (admin.c) ---- */

/* $1 user: known (registered, or a member somewhere). */
static const char sql_adm_user[] =
    "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1::uuid)"
    " OR EXISTS (SELECT 1 FROM members WHERE user_id = $1::uuid)";
/* $1 user, $2 cap: the user's conversations, oldest first. */
static const char sql_adm_user_convs[] =
    "SELECT c.id::text, c.kind, coalesce(c.room, '') FROM members m"
    " JOIN conversations c ON c.id = m.conversation_id"
    " WHERE m.user_id = $1::uuid ORDER BY c.created_at, c.id LIMIT $2::int";
#define ADM_CONV_COLS                                                                       \
    "SELECT c.id::text, c.kind, coalesce(c.room, ''), c.last_seq, c.closed_at IS NOT NULL," \
    " (extract(epoch FROM c.created_at) * 1000)::bigint,"                                   \
    " (SELECT count(*) FROM members WHERE conversation_id = c.id) FROM conversations c"
static const char sql_adm_conv[] = ADM_CONV_COLS " WHERE c.id = $1::uuid";
static const char sql_adm_room[] = ADM_CONV_COLS " WHERE c.room = $1::text";
/* $1 conversation, $2 cap. */
static const char sql_adm_members[] = "SELECT user_id::text FROM members"
                                      " WHERE conversation_id = $1::uuid"
                                      " ORDER BY joined_at, user_id LIMIT $2::int";

int msg_schema_prepare(PGconn *c)
{
    static const struct {
        const char *name, *sql;
        int nparams;
    } stmts[] = {
        {MSG_SQL_SEND, sql_send, 5},
        {MSG_SQL_LOOKUP, sql_lookup, 2},
        {MSG_SQL_SEND_MANY, sql_send_many, 5},
        {MSG_SQL_CREATE, sql_create, 3},
        {MSG_SQL_CLOSE, sql_close, 1},
        {MSG_SQL_INFO, sql_info, 2},
        {MSG_SQL_REPLAY, sql_replay, 4},
        {MSG_SQL_RECEIPT, sql_receipt, 4},
        {MSG_SQL_REGISTER, sql_register, 1},
        {MSG_SQL_OPEN_DM, sql_open_dm, 3},
        {MSG_SQL_JOIN, sql_join, 3},
        {MSG_SQL_LEAVE, sql_leave, 2},
        {MSG_SQL_HISTORY, sql_history, 4},
        {MSG_SQL_TYPING, sql_typing, 2},
        {MSG_SQL_CONTACTS, sql_contacts, 3},
        {MSG_SQL_FILL, sql_fill, 5},
        {MSG_SQL_FLOORS, sql_floors, 2},
        {MSG_SQL_LOCK, sql_lock, 1},
        {MSG_SQL_CATCHUP, sql_catchup, 6},
        {MSG_SQL_RET_SEED, sql_ret_seed, 1},
        {MSG_SQL_RET_GET, sql_ret_get, 0},
        {MSG_SQL_RET_SET, sql_ret_set, 1},
        {MSG_SQL_PURGE, sql_purge, 2},
        {MSG_SQL_PURGE_LOCK, sql_purge_lock, 0},
        {MSG_SQL_PURGE_UNLOCK, sql_purge_unlock, 0},
        {MSG_SQL_ADM_USER, sql_adm_user, 1},
        {MSG_SQL_ADM_USER_CONVS, sql_adm_user_convs, 2},
        {MSG_SQL_ADM_CONV, sql_adm_conv, 1},
        {MSG_SQL_ADM_ROOM, sql_adm_room, 1},
        {MSG_SQL_ADM_MEMBERS, sql_adm_members, 2},
    };
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
        PGresult *r = PQprepare(c, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            chat_error("pg_prepare_failed", "stmt=%s err=\"%s\"", stmts[i].name,
                       PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                           ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                           : "no result");
        PQclear(r);
        if (!ok)
            return -1;
    }
    return 0;
}
