from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def index(request):
    return HttpResponse("Hello from Django!\n", content_type="text/plain; charset=utf-8")


@csrf_exempt
def echo(request):
    return JsonResponse(
        {
            "method": request.method,
            "query": request.GET.dict(),
            "form": request.POST.dict(),
            "length": len(request.body),
        }
    )
