/**
 * image-agent: backs up the HD images of shipped orders, deletes them from
 * the shop's disk once the copy is verified, and brings any of them back on
 * demand. This file only builds the real dependencies and hands off to
 * `src/cli/main.ts`; it is the one place that exits the process.
 */

import { main } from "./src/cli/main.ts";

if (import.meta.main) {
  const code = await main(Deno.args);
  Deno.exit(code);
}
