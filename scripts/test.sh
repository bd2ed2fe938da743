#!/usr/bin/env bash
# `npm test`: installs what the tests need (see ensure-system-deps.sh), runs vitest once with a
# JSON report, and ends with a plain 'N passed, N failed' line.
set -u
cd "$(dirname "$0")/.."
bash scripts/ensure-system-deps.sh || exit 1
mkdir -p .cache
report=.cache/vitest-report.json
rm -f "$report"
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
status=$?
node -e '
const fs = require("fs");
const f = process.argv[1];
if (!fs.existsSync(f)) { console.log("0 passed, 1 failed"); process.exit(0); }
const r = JSON.parse(fs.readFileSync(f, "utf8"));
// A file that fails to load has no failed assertions but must count as a failure.
const broken = (r.testResults || []).filter(s => s.status === "failed" && !(s.assertionResults || []).some(a => a.status === "failed")).length;
console.log(`${r.numPassedTests} passed, ${r.numFailedTests + broken} failed`);
' "$report"
exit $status
