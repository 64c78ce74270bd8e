-- PostgreSQL's migration 0005 makes ledger_verify() report exact NUMERIC sums. SQLite has no such function:
-- its verify streams the postings and sums them in the application, exactly. This migration keeps the two
-- engines' version numbers in step and changes nothing.
SELECT 1;
