-- PostgreSQL's DMF outbox triggers moved their conditions into WHEN
-- clauses (SQLite's had them there from the start): nothing to do here.
SELECT 1;
