-- Plugin registry: which plugins the operator enabled on this instance, and their settings.
-- Disabling a plugin keeps its row (and its tables): enabling it again finds its data.
CREATE TABLE hl_plugins (
    name TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL DEFAULT 0,
    version TEXT NOT NULL,
    changed_at TEXT NOT NULL
);

CREATE TABLE hl_plugin_settings (
    plugin TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (plugin, key)
);
