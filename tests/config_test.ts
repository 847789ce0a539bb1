/** parseConfig(): defaults, relative paths, and errors that name the key. */

import assert from "node:assert/strict";
import { parseConfig } from "../src/config.ts";
import { ConfigError } from "../src/errors.ts";

const base = () => ({
  database: { path: "shop.db" },
  images: { root: "hd" },
  backup: { local: { dir: "/mnt/nas" } },
});

Deno.test("parseConfig() fills defaults and resolves paths against the config's folder", () => {
  const c = parseConfig(base(), "/srv/shop/image-agent.json", {
    checkPaths: false,
  });
  assert.equal(c.database.driver, "sqlite");
  assert.equal((c.database as { path: string }).path, "/srv/shop/shop.db");
  assert.equal(c.images.root, "/srv/shop/hd");
  assert.equal(c.backup.local.dir, "/mnt/nas");
  assert.equal(c.cleanup.afterDays, 10);
  assert.deepEqual(c.orders.shippedStatuses, ["shipped", "processing"]);
  assert.equal(c.backup.target, "local");
  assert.equal(c.backup.required, true);
  assert.equal(c.backup.retentionDays, 365);
  assert.equal(c.schedule.cron, "0 2 * * *");
  assert.ok(c.schedule.timezone.length > 0);
});

Deno.test("parseConfig() names the key at fault", () => {
  const cases: [
    string,
    (c: Record<string, unknown>) => void,
    string,
    RegExp,
  ][] = [
    [
      "unknown top-level key",
      (c) => (c.imagse = {}),
      "imagse",
      /did you mean "images"/,
    ],
    [
      "unknown nested key",
      (c) => (c.cleanup = { afterDay: 3 }),
      "cleanup.afterDay",
      /did you mean "cleanup.afterDays"/,
    ],
    [
      "negative days",
      (c) => (c.cleanup = { afterDays: -1 }),
      "cleanup.afterDays",
      /at least 0/,
    ],
    [
      "string for boolean",
      (c) => (c.backup = { required: "no", local: { dir: "/x" } }),
      "backup.required",
      /true or false/,
    ],
    [
      "unknown target",
      (c) => (c.backup = { target: "ftp" }),
      "backup.target",
      /one of "local", "baidu", "none"/,
    ],
    [
      "SQL in a column",
      (c) => (c.orders = { hdImage: "hd_image) --" }),
      "orders.hdImage",
      /plain SQL identifier/,
    ],
    [
      "statuses not a list",
      (c) => (c.orders = { shippedStatuses: "shipped" }),
      "orders.shippedStatuses",
      /list of strings/,
    ],
    ["missing image root", (c) => (c.images = {}), "images.root", /missing/],
    ["null section", (c) => (c.orders = null), "orders", /not null/],
    [
      "local target without a folder",
      (c) => (c.backup = {}),
      "backup.local.dir",
      /missing/,
    ],
    [
      "baidu folder outside /apps",
      (
        c,
      ) => (c.backup = {
        target: "baidu",
        baidu: { appKey: "k", folder: "/backup" },
      }),
      "backup.baidu.folder",
      /\/apps\/<app name>/,
    ],
    [
      "unknown zone",
      (c) => (c.schedule = { timezone: "Mars/Olympus" }),
      "schedule.timezone",
      /IANA/,
    ],
  ];
  for (const [label, mutate, key, message] of cases) {
    const c = base() as Record<string, unknown>;
    mutate(c);
    assert.throws(
      () => parseConfig(c, "/srv/x.json", { checkPaths: false }),
      (err) => {
        assert.ok(err instanceof ConfigError, label);
        assert.equal(err.key, key, label);
        assert.match(err.message, message, label);
        assert.equal(err.exitCode, 2);
        return true;
      },
    );
  }
});
