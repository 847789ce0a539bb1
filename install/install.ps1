# Installs image-agent on Windows: puts image-agent.exe in place, creates
# the config and state folders readable only by SYSTEM and Administrators,
# writes a starter config with 'image-agent init' when there is none, then
# registers the scheduled run with 'image-agent install' (Task Scheduler).
#
# Run from an elevated PowerShell:
#   powershell -ExecutionPolicy Bypass -File install.ps1 [-Binary PATH]
#     [-ShopDb PATH -ImagesDir DIR [-BackupDir DIR]]
#
# -ShopDb and -ImagesDir are needed only when there is no config yet.
#
# TODO: no test runs this script (the test machines have no PowerShell);
# run it in a Windows CI job, as tests/schedule_install_script_test.ts runs
# install.sh, once there is one.

param(
  [string]$Binary = "",
  [string]$InstallDir = "$env:ProgramFiles\image-agent",
  [string]$DataDir = "$env:ProgramData\image-agent",
  [string]$ShopDb = "",
  [string]$ImagesDir = "",
  [string]$BackupDir = "",
  [switch]$SkipSchedule
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

function Say([string]$Message) { Write-Host "install.ps1: $Message" }
function Fail([string]$Message) {
  Write-Error "install.ps1: error: $Message"
  exit 1
}

$principal = New-Object Security.Principal.WindowsPrincipal(
  [Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
  Fail "this needs an elevated (Administrator) PowerShell: it writes $InstallDir and $DataDir and registers a task that runs as SYSTEM"
}

if ($Binary -eq "") {
  $candidates = @(
    (Join-Path $PSScriptRoot "image-agent-x86_64-pc-windows-msvc.exe"),
    (Join-Path $PSScriptRoot "..\dist\image-agent-x86_64-pc-windows-msvc.exe")
  )
  $Binary = $candidates | Where-Object { Test-Path $_ } | Select-Object -First 1
  if (-not $Binary) {
    Fail "no image-agent-x86_64-pc-windows-msvc.exe next to this script; pass -Binary PATH"
  }
}
if (-not (Test-Path $Binary)) { Fail "binary '$Binary' does not exist" }

# Everything the steps below need is checked first, so a missing parameter
# stops the script before anything is installed.
$config = Join-Path $DataDir "config.json"
if (-not (Test-Path $config) -and ($ShopDb -eq "" -or $ImagesDir -eq "")) {
  Fail "there is no $config yet: pass -ShopDb PATH and -ImagesDir DIR (and -BackupDir DIR for a local or NAS copy) so 'image-agent init' can write one; nothing was installed"
}

# 1. The binary, copied under a temporary name and then renamed.
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
$target = Join-Path $InstallDir "image-agent.exe"
Copy-Item -Force $Binary "$target.new"
Move-Item -Force "$target.new" $target
Say "installed $target ($(& $target --version))"

# 2. Config and state folders: SYSTEM and Administrators only, because the
#    config may hold the database password and the state the Baidu tokens.
$stateDir = Join-Path $DataDir "state"
New-Item -ItemType Directory -Force -Path $DataDir, $stateDir | Out-Null
& icacls $DataDir /inheritance:r /grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F" | Out-Null
if ($LASTEXITCODE -ne 0) { Fail "could not restrict the permissions of $DataDir" }

# 3. A starter config when there is none; an existing one is kept.
if (Test-Path $config) {
  Say "keeping the existing config $config"
} else {
  $initArgs = @("init", "--database", $ShopDb, "--images", $ImagesDir,
    "--out", $config, "--state", $stateDir)
  if ($BackupDir -ne "") { $initArgs += @("--backup-dir", $BackupDir) }
  & $target @initArgs
  if ($LASTEXITCODE -ne 0) { Fail "'image-agent init' failed" }
  Say "check the order mapping in $config and run 'image-agent migrate --config $config' before the first night"
}

# 4. The scheduled run, as a Task Scheduler task running as SYSTEM.
if ($SkipSchedule) {
  Say "not scheduling (-SkipSchedule)"
} else {
  & $target install --config $config
  if ($LASTEXITCODE -ne 0) { Fail "'image-agent install' failed" }
}
Say "done"
