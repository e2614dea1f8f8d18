-- A Secret's superseded change rows are rewritten without their values (see core::record); this
-- index finds them without scanning the log, and holds Secret rows only, so other writes pay nothing.
CREATE INDEX changes_of_secrets ON changes (namespace, name) WHERE grp = '' AND kind = 'Secret';
