#!/bin/sh
# Run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d).
# Synapse requires the C collation and ctype on its database (template0, UTF8); the bridge
# and the bot each get their own database, owned by the deployment's role.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER "$POSTGRES_USER";
CREATE DATABASE caducee_bridge OWNER "$POSTGRES_USER";
CREATE DATABASE caducee_bot OWNER "$POSTGRES_USER";
SQL
