/** resolveImage(): which image paths the agent may touch. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveImage } from "../src/engine/paths.ts";

Deno.test("resolveImage() accepts files inside the root and refuses the rest, with a reason", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    const root = join(dir, "root");
    await Deno.mkdir(join(root, "sub 子目录"), { recursive: true });
    await Deno.writeTextFile(join(root, "sub 子目录", "图 1.png"), "x");
    await Deno.writeTextFile(join(dir, "secret.txt"), "s");
    await Deno.mkdir(join(dir, "elsewhere"));
    await Deno.symlink(join(dir, "secret.txt"), join(root, "out.png"));
    await Deno.symlink(
      join(root, "sub 子目录", "图 1.png"),
      join(root, "in.png"),
    );
    await Deno.symlink(join(dir, "elsewhere"), join(root, "outdir"));
    const long = "a".repeat(300) + ".png";
    const table: [string, string, RegExp | null][] = [
      ["relative path with spaces and Chinese", "sub 子目录/图 1.png", null],
      ["absolute path inside", join(root, "sub 子目录", "图 1.png"), null],
      ["symlink that stays inside", "in.png", null],
      ["parent escape", "../secret.txt", /outside images.root/],
      [
        "escape in the middle",
        "sub 子目录/../../secret.txt",
        /outside images.root/,
      ],
      [
        "absolute path elsewhere",
        join(dir, "secret.txt"),
        /outside images.root/,
      ],
      ["symlink pointing out", "out.png", /symlink/],
      [
        "missing file below a symlinked folder that points out",
        "outdir/new.png",
        /symlink/,
      ],
      ["NUL byte", "sub 子目录/图 1.png\0.txt", /NUL byte/],
      ["a folder", "sub 子目录", /not a regular file/],
      ["the root itself", ".", /not a regular file|outside/],
      ["empty", "  ", /empty/],
      ["missing file", "nope.png", /^missing$/],
      ["name too long", long, /too long|^missing$/],
    ];
    for (const [label, value, expected] of table) {
      const r = await resolveImage(root, value);
      if (expected === null) {
        assert.equal(r.kind, "file", `${label}: ${JSON.stringify(r)}`);
      } else if (expected.source === "^missing$") {
        assert.equal(r.kind, "missing", `${label}: ${JSON.stringify(r)}`);
      } else if (r.kind === "refused") {
        assert.match(r.reason, expected, label);
      } else {
        assert.match(r.kind, expected, `${label}: ${JSON.stringify(r)}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
