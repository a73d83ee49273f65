// Package dist holds the files for running Petrel in production and in
// development, outside the Go code: the systemd unit (petreld.service),
// the development profile (petrel.dev.toml) for the README quick start,
// the Grafana dashboard and Prometheus alert rules. It has no code; its
// tests check these files against a real petreld (the README quick start
// as written, petrel-sendmail, systemd-analyze, promtool, /metrics).
package dist
