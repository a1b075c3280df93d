-- Placeholder so that 008 applies on the jobs branch: numbers 006 and 007 belong to other
-- helpers' branches. Delete this file when merging theirs.
SELECT 1;
