#!/bin/sh
# The OAuth 2.0 server of the tests (tests/lib/oauthserver.js): Node.js and
# npm (Debian's nodejs, 18 on bookworm, when no node is installed), and
# oidc-provider at the version pinned in tests/lib/package.json and
# package-lock.json, installed with `npm ci` into build/oauth-node
# ($OAUTH_NODE_DIR) with its cache in build/npm-cache. Safe to run again:
# it does nothing while the installed copy matches the lock file.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest=${OAUTH_NODE_DIR:-$root/build/oauth-node}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	# A machine with NodeSource's nodejs has npm inside it; Debian's
	# comes apart.
	sh "$here/deps.sh" oauth-deps nodejs npm
fi
want=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -f "$dest/.installed" ] && [ "$(cat "$dest/.installed")" = "$want" ] &&
	[ -f "$dest/node_modules/oidc-provider/package.json" ]; then
	exit 0
fi
echo "oauth-deps: npm ci into $dest (node $(node --version))"
mkdir -p "$dest" "$root/build/npm-cache"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
npm ci --prefix "$dest" --cache "$root/build/npm-cache" --no-audit --no-fund \
	--loglevel=error
echo "$want" > "$dest/.installed"
