"""chat: a batch of sends stored by one function call on PostgreSQL

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 02:10:00.000000

`plaza_store_messages` stores a batch of members' sends in one round trip, and, called outside a
transaction, in one transaction of its own: no BEGIN and COMMIT round trips either. It locks the
batch's conversations in id order, reads their current members (a statement of its own, so after a
wait for a lock it sees what committed meanwhile), gives each sender's message the conversation's
next seq, stores the messages, moves each conversation's last_seq and each sender's cursors (their
rows locked in (conversation, user) order, as every batch of cursor moves locks them), and
returns, per conversation that has members, its members and the seq each of the batch's messages
there got (NULL for a sender who is not a member). `plaza.chat.store.store_sends` runs the same
steps statement by statement on SQLite.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CREATE = """
CREATE FUNCTION plaza_store_messages(
    p_ids bigint[], p_conversation_ids bigint[], p_sender_ids bigint[],
    p_client_msg_ids text[], p_contents text[], p_message_types text[], p_now timestamptz
) RETURNS TABLE (conversation_id bigint, member_ids bigint[], seqs bigint[])
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM FROM conversations AS c
    WHERE c.id = ANY (p_conversation_ids) ORDER BY c.id FOR UPDATE;

    RETURN QUERY
    WITH drafts AS (
        SELECT * FROM unnest(
            p_ids, p_conversation_ids, p_sender_ids, p_client_msg_ids, p_contents, p_message_types
        ) WITH ORDINALITY
            AS d (id, conversation_id, sender_id, client_msg_id, content, message_type, ord)
    ), current_members AS (
        SELECT m.conversation_id, array_agg(m.user_id ORDER BY m.joined_at, m.user_id) AS member_ids
        FROM conversation_members AS m
        WHERE m.conversation_id = ANY (p_conversation_ids) AND m.left_at IS NULL
        GROUP BY m.conversation_id
    ), kept AS (
        SELECT d.*, c.last_seq + row_number()
            OVER (PARTITION BY d.conversation_id ORDER BY d.ord) AS seq
        FROM drafts AS d
        JOIN conversations AS c ON c.id = d.conversation_id
        JOIN current_members AS cm ON cm.conversation_id = d.conversation_id
        WHERE d.sender_id = ANY (cm.member_ids)
    ), stored AS (
        INSERT INTO messages
            (id, conversation_id, seq, sender_id, client_msg_id, content, message_type, created_at)
        SELECT k.id, k.conversation_id, k.seq, k.sender_id, k.client_msg_id, k.content,
            k.message_type, p_now
        FROM kept AS k
    ), last_seqs AS (
        UPDATE conversations AS c SET last_seq = t.seq, last_activity_at = p_now
        FROM (SELECT k.conversation_id, max(k.seq) AS seq FROM kept AS k GROUP BY 1) AS t
        WHERE c.id = t.conversation_id
    ), senders AS (
        SELECT k.conversation_id, k.sender_id, max(k.seq) AS seq FROM kept AS k GROUP BY 1, 2
    ), locked AS (  -- in (conversation, user) order, as every batch of cursor moves locks them
        SELECT m.conversation_id, m.user_id, s.seq
        FROM conversation_members AS m
        JOIN senders AS s ON s.conversation_id = m.conversation_id AND s.sender_id = m.user_id
        WHERE m.left_at IS NULL
        ORDER BY m.conversation_id, m.user_id
        FOR UPDATE OF m
    ), cursors AS (
        UPDATE conversation_members AS m
        SET read_seq = greatest(m.read_seq, l.seq), delivered_seq = greatest(m.delivered_seq, l.seq)
        FROM locked AS l
        WHERE m.conversation_id = l.conversation_id AND m.user_id = l.user_id
    )
    SELECT cm.conversation_id, cm.member_ids, array_agg(k.seq ORDER BY d.ord)
    FROM drafts AS d
    JOIN current_members AS cm ON cm.conversation_id = d.conversation_id
    LEFT JOIN kept AS k ON k.ord = d.ord
    GROUP BY cm.conversation_id, cm.member_ids;
END
$$
"""
_DROP = (
    "DROP FUNCTION IF EXISTS plaza_store_messages("
    "bigint[], bigint[], bigint[], text[], text[], text[], timestamptz)"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_DROP)
