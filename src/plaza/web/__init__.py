"""The web app: HTML pages and static files served by `plaza serve`, and the browser's cookie session."""
