/** `image-agent baidu`: login, logout, whoami, quota. */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

// TODO: placeholder until the Baidu Netdisk target lands; it only says so.
export const baiduCommand: Command = {
  name: "baidu",
  summary: "log in to Baidu Netdisk, log out, show the account and quota",
  help: "Usage: image-agent baidu login|logout|whoami|quota\n",
  run() {
    return Promise.reject(
      new UsageError(
        "The Baidu Netdisk commands are not available in this build",
      ),
    );
  },
};
