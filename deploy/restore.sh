#!/usr/bin/env bash
# Restore a backup into a new, empty database, then check it before anyone uses it:
#   deploy/restore.sh backup.dump postgresql://care_ssc_owner@127.0.0.1/care_ssc_restored portal_app
# The database must exist and be empty, owned by the migration owner (createdb -O care_ssc_owner).
# The app role (third argument) gets its privileges again; then the audit trail and the
# dashboard's tallies are verified with the restored data (docs/deployment.md).
set -euo pipefail
backup=${1:?backup file}
database_url=${2:?database URL of the new database}
app_role=${3:?app role}
here=$(cd "$(dirname "$0")/.." && pwd)
flask=${FLASK:-$here/.venv/bin/flask}
pg_restore --exit-on-error --no-owner --no-privileges --single-transaction \
  --dbname="$database_url" "$backup"
export FLASK_APP="$here/wsgi.py"
DATABASE_URL=$database_url "$flask" database grant-app-role "$app_role"
DATABASE_URL=$database_url "$flask" audit verify
DATABASE_URL=$database_url "$flask" workspace tally
echo "Restored into $database_url and verified."
