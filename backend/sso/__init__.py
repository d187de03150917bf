"""Government sign-in: 浙政钉 for staff, 浙里办 for citizens, and generic OpenID Connect.

``providers/`` speaks each provider's protocol; ``service.py`` turns a verified identity
into a Hehe account (linked by the provider's stable id, roles only from invites);
``api.py`` holds the login and callback routes. See docs/sso.md.
"""
