-- ALLOW and BLOCK patches (the seed plan's "always keep" and "always drop"): the rule column
-- accepts them. ALLOW wins over every other rule; BLOCK drops records before templating.
ALTER TABLE patches DROP CONSTRAINT IF EXISTS patches_rule_check;
ALTER TABLE patches ADD CONSTRAINT patches_rule_check
    CHECK (rule IN ('MUTE', 'DROP', 'THRESHOLD', 'ALLOW', 'BLOCK'));
