-- 0051 case access: every group and domain grant through which a user has
-- accessed a case (a JSON list of caseaccess.UsedGrant), so that removing
-- any of them keeps the access of users who used it, not only of those whose
-- last access went through it. NULL on records written before: the record's
-- via_* columns then stand for the list.
ALTER TABLE case_access ADD COLUMN grants TEXT;
