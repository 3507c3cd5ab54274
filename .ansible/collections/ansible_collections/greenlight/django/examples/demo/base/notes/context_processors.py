from django.conf import settings


def demo_version(request):
    """Every page shows which release of the demo served it."""
    return {"demo_version": settings.DEMO_VERSION}
