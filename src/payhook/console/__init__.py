"""The operator console: server-rendered pages, one CSS and one JS file, all served by payhook."""
