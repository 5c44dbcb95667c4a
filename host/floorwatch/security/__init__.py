"""Who may talk to the broker, and how: floorwatch's side of MQTT security.

- passwd: password entries in mosquitto's own PBKDF2-SHA512 format, and the password file.
- pki: the development CA and the broker's TLS certificate (with `cryptography`).
- acl: the ACL file: each device under its own topics only; the monitor and operator roles.
- brokerdir: a broker directory (`floorwatch broker init`): conf, passwords, ACL, certificates.
- command: the `floorwatch broker` commands (init, run).
- access: how host tools connect to a broker (URL, TLS, credentials) without showing a password.
"""
