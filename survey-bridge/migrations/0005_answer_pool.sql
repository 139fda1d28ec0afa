-- Answers that cannot be tied to their invitations (and consent before any answer).
--
-- invitations.state gains 'consented': the patient agreed on the consent page. No time is
-- kept for it.
--
-- A response marks its invitation 'responded' in one transaction and puts its answers here
-- in another. Each row is sealed (AES-256-GCM under a key derived from the bridge's key,
-- which the database does not hold) and holds the invitation's site, provider, campaign and
-- month and the answers: no GUID, no time, and an id of 128 random bits, so neither its id
-- nor its contents say when it came or whose it is. A fold counts the rows into
-- answer_counts and period_counts in a transaction of its own, a whole group at a time
-- (once it holds reports.min_cell answers, or once its month is over), writing sums in key
-- order, and deletes them.
CREATE TABLE answer_pool (
    id     TEXT NOT NULL PRIMARY KEY,
    sealed TEXT NOT NULL
);
