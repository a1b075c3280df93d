-- Refused by the authorizer: not named luaschema_*.
CREATE TABLE users_copy (id INTEGER);
