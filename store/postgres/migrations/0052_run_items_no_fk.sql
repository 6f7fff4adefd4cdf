-- 0052 run items: the foreign key run_items.run_id -> runs.id is replaced by
-- the store's own check. A bulk sync writes one run item per change (75,000
-- for the CWA benchmark's initial import) and the key's per-row trigger cost
-- 0.75 s of the import's 1.2 s of run-item writing (measured with INSERT ...
-- SELECT of 75,000 rows: 1,168 ms with the key, 413 ms without). The
-- guarantee is kept by AddRunItems (store/sqlstore/runs.go): it locks each
-- run's row FOR KEY SHARE, as the key's trigger did, and refuses items of a
-- run that does not exist; runs are never deleted.
ALTER TABLE run_items DROP CONSTRAINT run_items_run_id_fkey;
