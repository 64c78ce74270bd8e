-- The index of postings by account is dropped: only verify reads postings by account, and it reads all of them
-- (a full scan grouped in memory costs it little). Kept, the index put every posting into one of as many
-- insertion points as there are active accounts, so each group commit rewrote that many index pages into the
-- WAL: most of the pages a commit wrote. Every constraint and trigger of the postings stays as it was.
DROP INDEX ledger_postings_account;
