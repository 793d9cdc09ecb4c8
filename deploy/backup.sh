#!/usr/bin/env bash
# Back up the portal's PostgreSQL database to one custom-format file:
#   deploy/backup.sh postgresql://care_ssc_owner@127.0.0.1/care_ssc /var/backups/care-ssc/$(date +%F).dump
# Run it as the migration owner (it reads every table). The file holds health data: keep it
# encrypted at rest and off the database server (docs/deployment.md).
set -euo pipefail
database_url=${1:?database URL}
target=${2:?backup file}
umask 077
pg_dump --format=custom --no-owner --no-privileges --file="$target" "$database_url"
pg_restore --list "$target" >/dev/null  # the file is readable as a whole
echo "Backed up to $target ($(stat -c %s "$target") bytes)."
