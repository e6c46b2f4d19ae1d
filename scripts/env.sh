# Sourced by scripts/run.sh (bash): read `.env` the way the service and docker compose do.
#
# load_dotenv FILE exports each `NAME=VALUE` line of FILE whose NAME the environment does not set
# already, so a variable given on the command line or exported in the shell wins over `.env`, as
# it does for pydantic-settings (config.py). Values are taken literally, as python-dotenv and
# docker compose take them: `API_ALLOWED_HOSTS=["stt.example.com"]` stays a JSON list (sourcing the
# file with `.` would let bash strip its quotes). One pair of surrounding quotes ('...' or "...")
# is removed; an unquoted value ends before ` #` (a comment). Blank lines, `#` lines and an
# `export ` prefix are accepted; lines that are not `NAME=VALUE` are skipped.
load_dotenv() {
  local line name value
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    line=${line#"${line%%[![:space:]]*}"}
    line=${line#export }
    [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    name=${BASH_REMATCH[1]}
    value=${BASH_REMATCH[2]}
    if [[ $value =~ ^\"(.*)\"[[:space:]]*$ || $value =~ ^\'(.*)\'[[:space:]]*$ ]]; then
      value=${BASH_REMATCH[1]}
    else
      value=${value%%[[:space:]]#*}
      value=${value%"${value##*[![:space:]]}"}
    fi
    [ -n "${!name+set}" ] || export "$name=$value"
  done <"$1"
}
