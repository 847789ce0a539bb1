/**
 * install/install.sh, run for real against a temporary prefix with a fake
 * image-agent binary that records how it was called.
 */

import assert from "node:assert/strict";
import { join } from "node:path";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const SCRIPT = join(REPO, "install/install.sh");

const FAKE_BINARY = `#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$1" in
  --version) echo "image-agent 0.1.0 (fake)" ;;
  init)
    while [ $# -gt 0 ]; do
      if [ "$1" = --out ]; then echo '{}' > "$2"; fi
      shift
    done ;;
esac
`;

async function run(
  env: Record<string, string>,
  args: string[] = [],
): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command("sh", {
    args: [SCRIPT, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

async function withPrefix(
  fn: (dir: string, env: Record<string, string>) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "ia-install-sh-" });
  try {
    const fake = join(dir, "image-agent-build");
    await Deno.writeTextFile(fake, FAKE_BINARY, { mode: 0o755 });
    await fn(dir, {
      PREFIX: join(dir, "usr"),
      CONFIG_DIR: join(dir, "etc/image-agent"),
      STATE_DIR: join(dir, "var/lib/image-agent"),
      FAKE_LOG: join(dir, "calls.log"),
      IMAGE_AGENT_ALLOW_USER: "1",
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("install.sh passes sh -n (and shellcheck when present)", async () => {
  const syntax = await new Deno.Command("sh", { args: ["-n", SCRIPT] })
    .output();
  assert.equal(syntax.code, 0);
  try {
    const sc = await new Deno.Command("shellcheck", {
      args: [SCRIPT],
      stdout: "piped",
    }).output();
    assert.equal(sc.code, 0, new TextDecoder().decode(sc.stdout));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
});

Deno.test("install.sh places the binary, makes safe folders, runs init then install", async () => {
  await withPrefix(async (dir, env) => {
    const fake = join(dir, "image-agent-build");
    const r = await run({
      ...env,
      SHOP_DB: "/srv/shop.db",
      IMAGES_DIR: "/srv/hd",
      BACKUP_DIR: "/mnt/nas",
    }, [fake]);
    assert.equal(r.code, 0, r.stderr);
    const bin = join(dir, "usr/bin/image-agent");
    assert.equal((await Deno.stat(bin)).mode! & 0o777, 0o755);
    const mode = async (p: string) => (await Deno.stat(p)).mode! & 0o777;
    assert.equal(await mode(join(dir, "etc/image-agent")), 0o750);
    assert.equal(await mode(join(dir, "var/lib/image-agent")), 0o700);
    assert.equal(await mode(join(dir, "etc/image-agent/config.json")), 0o640);
    const config = join(dir, "etc/image-agent/config.json");
    assert.deepEqual(
      (await Deno.readTextFile(join(dir, "calls.log"))).trim().split("\n"),
      [
        "--version",
        `init --database /srv/shop.db --images /srv/hd --out ${config} --state ${
          join(dir, "var/lib/image-agent")
        } --backup-dir /mnt/nas`,
        `install --config ${config}`,
      ],
    );

    // Again: the config is kept and init is not run a second time.
    await Deno.remove(join(dir, "calls.log"));
    const again = await run(env, [fake]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /keeping the existing config/);
    assert.deepEqual(
      (await Deno.readTextFile(join(dir, "calls.log"))).trim().split("\n"),
      ["--version", `install --config ${config}`],
    );
  });
});

Deno.test("install.sh says what it needs when there is no config", async () => {
  await withPrefix(async (dir, env) => {
    const r = await run(env, [join(dir, "image-agent-build")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /set SHOP_DB=\/path\/to\/shop\.db and IMAGES_DIR=/);
    assert.match(r.stderr, /nothing was installed/);
    // Checked before anything is put in place: no binary without a config.
    for (const p of ["usr/bin/image-agent", "etc", "var", "calls.log"]) {
      assert.equal(await exists(join(dir, p)), false, p);
    }
  });
});

Deno.test("install.sh refuses a missing binary clearly", async () => {
  await withPrefix(async (dir, env) => {
    const r = await run(env, [join(dir, "nope")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /binary '.*nope' does not exist/);
  });
});
