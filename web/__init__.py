"""The web application (issue 16): server-rendered pages over the HTTP API's sessions,
policy and audit, served by `liuhen serve` with their own CSS and JavaScript."""
