// Package notsotuf ships secure, small, crash-safe updates of an application.
//
// The repository side packages an application bundle into a deterministic
// archive named <app>-<version>.tar.gz, computes a binary patch from the
// previous release (BSDIFF40, or the compact format for executables: see
// [PatchFormat]), and signs TUF metadata (root, targets, snapshot,
// timestamp). The client side refreshes the metadata following the TUF client
// workflow, plans an update (a patch chain or the full archive, whichever is
// smaller), downloads with verification and installs atomically.
//
// Every file operation goes through an [afero.Fs], the clock and the HTTP
// client are fields a caller can set, and the library logs through
// [log/slog] only when given a logger.
package notsotuf
